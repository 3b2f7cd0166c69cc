"""Text out of uploaded files: one `Segment` per page (PDF), slide (PPTX) or whole document.

A file we cannot read raises `IngestError` with the OpenAI `last_error.code` (`unsupported_file` for a type
we do not handle, `invalid_file` for a broken, empty or oversized one) and a message a person can act on.
Archives and PDFs are checked against `ExtractLimits` before they are parsed (limits.py). This module parses
in the calling process: the server calls it through `ProcessExtractor` (extract_process.py), which runs the
parsers in a child process with capped memory and time.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from assistd.tools.file_search.errors import IngestError
from assistd.tools.file_search.limits import (
    ExtractLimits,
    check_archive,
    check_pages,
    check_text,
    pdf_limits,
    size,
)

__all__ = ["IngestError", "Segment", "extension", "extract", "is_plain_text"]


@dataclass
class Segment:
    text: str
    page: int | None = None  # 1-based page (PDF) or slide (PPTX) number


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


def is_plain_text(filename: str) -> bool:
    """Text formats are only decoded, in memory proportional to their size: no parser, no expansion."""
    return extension(filename) in TEXT_EXTENSIONS


def extract(filename: str, data: bytes, limits: ExtractLimits | None = None) -> list[Segment]:
    """The text of a file, by its extension. Raises IngestError; never returns an empty list."""
    limits = limits or ExtractLimits()
    ext = extension(filename)
    if not data:
        raise IngestError("invalid_file", f"'{filename}' is empty (0 bytes): upload a file with content.")
    if ext in TEXT_EXTENSIONS:
        check_text(filename, len(data), limits)
        segments = [Segment(_decode(filename, data))]
    elif ext in HTML_EXTENSIONS:
        segments = [Segment(_html_text(_decode(filename, data)))]
    elif ext == ".pdf":
        segments = _pdf(filename, data, limits)
    elif ext == ".docx":
        segments = _docx(filename, data, limits)
    elif ext == ".pptx":
        segments = _pptx(filename, data, limits)
    else:
        shown = f"'{ext}'" if ext else "no extension"
        raise IngestError(
            "unsupported_file",
            f"'{filename}' has {shown}, a file type file_search cannot read. Supported: "
            f"{', '.join(SUPPORTED)}. Convert it to one of these (for example .txt or .pdf) "
            "and upload again.",
        )
    segments = [s for s in segments if s.text.strip()]
    check_text(filename, sum(len(s.text.encode("utf-8", "surrogatepass")) for s in segments), limits)
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


def _pdf(filename: str, data: bytes, limits: ExtractLimits) -> list[Segment]:
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        with pdf_limits(limits):
            return _pdf_pages(filename, data, limits)
    except IngestError:
        raise
    except LimitReachedError:
        raise IngestError(
            "invalid_file",
            f"'{filename}': a stream of the PDF expands beyond {size(limits.max_stream_bytes)} (the limit "
            "for one stream, --extract-max-uncompressed-mb). It looks like a decompression bomb or a "
            "damaged file.",
        ) from None
    except (PyPdfError, *_PARSE_ERRORS) as exc:
        raise IngestError(
            "invalid_file",
            f"'{filename}' could not be read as a PDF ({_why(exc)}). "
            "The file may be damaged or not a PDF: re-export or re-download it.",
        ) from None


def _pdf_pages(filename: str, data: bytes, limits: ExtractLimits) -> list[Segment]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise IngestError("invalid_file", f"'{filename}' is a password-protected PDF: upload it unlocked.")
    check_pages(filename, _declared_pages(reader), limits)
    segments, text_bytes = [], 0
    for i, page in enumerate(reader.pages):
        if i >= limits.max_pdf_pages:  # the page tree holds more pages than it declared
            check_pages(filename, i + 1, limits)
        page.get_contents()  # decodes the content: a stream past the limit raises here, extract_text hides it
        segments.append(Segment(page.extract_text() or "", i + 1))
        text_bytes += len(segments[-1].text.encode("utf-8", "surrogatepass"))
        check_text(filename, text_bytes, limits)
    return segments


def _declared_pages(reader: Any) -> int:
    """The page count the PDF declares (/Count of its page tree), read without walking the tree; 0 when it
    declares none (the page loop still counts)."""
    try:
        count = reader.trailer["/Root"]["/Pages"].get("/Count", 0)
    except (KeyError, TypeError, AttributeError):
        return 0
    return count if isinstance(count, int) else 0


def _docx(filename: str, data: bytes, limits: ExtractLimits) -> list[Segment]:
    def read() -> list[Segment]:
        from docx import Document

        doc = Document(io.BytesIO(data))
        parts = [p.text for p in doc.paragraphs]
        for table in doc.tables:
            for row in table.rows:
                parts.append(" | ".join(cell.text.strip() for cell in row.cells))
        return [Segment("\n".join(parts))]

    advice = "Save it again as .docx (not .doc) and upload it."
    return _office(filename, data, limits, ".docx", "a Word .docx document", advice, read)


def _pptx(filename: str, data: bytes, limits: ExtractLimits) -> list[Segment]:
    def read() -> list[Segment]:
        from pptx import Presentation

        deck = Presentation(io.BytesIO(data))
        segments = []
        for number, slide in enumerate(deck.slides, start=1):
            texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
            segments.append(Segment("\n".join(texts), number))
        return segments

    advice = "Save it again as .pptx and upload it."
    return _office(filename, data, limits, ".pptx", "a PowerPoint .pptx file", advice, read)


def _office(
    filename: str,
    data: bytes,
    limits: ExtractLimits,
    kind: str,
    what: str,
    advice: str,
    read: Callable[[], list[Segment]],
) -> list[Segment]:
    """Checks the zip archive of a .docx/.pptx against the limits, then parses it with `read`."""
    import zipfile

    from docx.opc.exceptions import OpcError
    from lxml.etree import LxmlError
    from pptx.exc import PythonPptxError

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_archive(filename, archive, kind, limits)
        return read()
    except IngestError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        LxmlError,
        OpcError,
        PythonPptxError,
        *_PARSE_ERRORS,
    ) as exc:
        raise IngestError(
            "invalid_file",
            f"'{filename}' could not be read as {what} ({_why(exc)}). {advice}",
        ) from None


# What a parser raises on a damaged or hostile file (a bug of ours would raise these too: the message names
# the exception, and the rest of the batch goes on).
_PARSE_ERRORS = (
    KeyError,
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
    OSError,
    EOFError,
    RecursionError,
    NotImplementedError,
    zlib.error,
)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"
