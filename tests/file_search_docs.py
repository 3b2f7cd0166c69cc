"""Documents for the file_search tests, made in memory: a 2-page PDF, a .docx, markdown, a corrupt PDF.

Each fact lives in exactly one file, so a search for it must return that file's chunk."""

from __future__ import annotations

import io

PDF_PAGE_1 = "Orchard report. The orchard grows apples, pears and plums on the northern slope."
PDF_PAGE_2 = "Irrigation schedule. The pumps at the southern reservoir run every Tuesday at dawn."
DOCX_FACT = "The Falcon project launch code is AZURE-7731, approved by the steering committee."
MARKDOWN = (
    "# Kitchen handbook\n\n"
    "The sourdough starter is fed twice a day with rye flour.\n\n"
    "## Cleaning\n\nOvens are cleaned on Fridays after closing.\n"
)
CORRUPT_PDF = (
    b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n%%garbage without xref\n\x00\xff\x13"
)


def pdf_bytes(pages: tuple[str, ...] = (PDF_PAGE_1, PDF_PAGE_2)) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def docx_bytes(paragraphs: tuple[str, ...] = ("Project notes", DOCX_FACT)) -> bytes:
    from docx import Document

    doc = Document()
    for text in paragraphs:
        doc.add_paragraph(text)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def pptx_bytes(slides: tuple[str, ...]) -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for text in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[6])
        box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(2))
        box.text_frame.text = text
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()
