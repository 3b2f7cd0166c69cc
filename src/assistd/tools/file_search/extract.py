"""Text out of uploaded files: one `Segment` per page (PDF), slide (PPTX) or whole document.

A file we cannot read raises `IngestError` with the OpenAI `last_error.code` (`unsupported_file` for a type
we do not handle, `invalid_file` for a broken or empty one) and a message a person can act on."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass
class Segment:
    text: str
    page: int | None = None  # 1-based page (PDF) or slide (PPTX) number


class IngestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_TEXT = (
    ".txt .md .markdown .rst .org .tex .log .csv .tsv .json .jsonl .yaml .yml .toml .ini .cfg .xml "
    ".py .js .mjs .ts .tsx .jsx .java .kt .scala .go .rs .rb .php .pl .c .h .cc .cpp .hpp .cs .swift "
    ".m .r .sh .bash .zsh .ps1 .sql .css .scss .vue .svelte .lua .dart .ex .exs .hs .clj"
)
TEXT_EXTENSIONS = frozenset(_TEXT.split())
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED = sorted(TEXT_EXTENSIONS | HTML_EXTENSIONS | {".pdf", ".docx", ".pptx"})


def extension(filename: str) -> str:
    return PurePosixPath(filename.lower()).suffix


def extract(filename: str, data: bytes) -> list[Segment]:
    """The text of a file, by its extension. Raises IngestError; never returns an empty list."""
    ext = extension(filename)
    if not data:
        raise IngestError("invalid_file", f"'{filename}' is empty (0 bytes): upload a file with content.")
    if ext in TEXT_EXTENSIONS:
        segments = [Segment(_decode(filename, data))]
    elif ext in HTML_EXTENSIONS:
        segments = [Segment(_html_text(_decode(filename, data)))]
    elif ext == ".pdf":
        segments = _pdf(filename, data)
    elif ext == ".docx":
        segments = _docx(filename, data)
    elif ext == ".pptx":
        segments = _pptx(filename, data)
    else:
        shown = f"'{ext}'" if ext else "no extension"
        raise IngestError(
            "unsupported_file",
            f"'{filename}' has {shown}, a file type file_search cannot read. Supported: "
            f"{', '.join(SUPPORTED)}. Convert it to one of these (for example .txt or .pdf) "
            "and upload again.",
        )
    segments = [s for s in segments if s.text.strip()]
    if not segments:
        raise IngestError(
            "invalid_file",
            f"'{filename}' contains no extractable text (a scanned or image-only document?). "
            "Upload a version with a text layer, or the text itself as .txt.",
        )
    return segments


def _decode(filename: str, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise IngestError(
            "invalid_file",
            f"'{filename}' looks like binary data, not text: check the file and its extension.",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _pdf(filename: str, data: bytes) -> list[Segment]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(
                "invalid_file", f"'{filename}' is a password-protected PDF: upload it unlocked."
            )
        return [Segment(page.extract_text() or "", i + 1) for i, page in enumerate(reader.pages)]
    except IngestError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError) as exc:
        raise IngestError(
            "invalid_file",
            f"'{filename}' could not be read as a PDF ({type(exc).__name__}: {str(exc)[:200]}). "
            "The file may be damaged or not a PDF: re-export or re-download it.",
        ) from None


def _docx(filename: str, data: bytes) -> list[Segment]:
    import zipfile

    from docx import Document

    try:
        doc = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise IngestError(
            "invalid_file",
            f"'{filename}' could not be read as a Word .docx document ({type(exc).__name__}). "
            "Save it again as .docx (not .doc) and upload it.",
        ) from None
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return [Segment("\n".join(parts))]


def _pptx(filename: str, data: bytes) -> list[Segment]:
    import zipfile

    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise IngestError(
            "invalid_file",
            f"'{filename}' could not be read as a PowerPoint .pptx file ({type(exc).__name__}). "
            "Save it again as .pptx and upload it.",
        ) from None
    segments = []
    for number, slide in enumerate(deck.slides, start=1):
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
        segments.append(Segment("\n".join(texts), number))
    return segments
