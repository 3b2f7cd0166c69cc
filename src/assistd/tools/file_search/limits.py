"""Limits on what one uploaded file may cost to read, and the checks made before a parser sees the file.

Office files are zip archives of XML: a small upload can expand to gigabytes (a zero-filled part) or to
millions of XML elements (empty paragraphs), and python-docx/python-pptx hold all of it in memory. So
before parsing, the archive's directory is checked (number of members, declared sizes, compression
ratio) and its XML is streamed once to count elements, in bounded memory. `zipfile` never yields more
than a member's declared size (a member that lies fails its CRC), so the declared sizes can be trusted.
PDF streams are capped through pypdf's own decompression limits (its Configuration), and the page count
is checked before pages are read. What slips past these checks is still bounded by the memory and time
limits of the extraction process (see extract_process.py).
"""

from __future__ import annotations

import zipfile
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

from assistd.tools.file_search.errors import IngestError

MiB = 1024 * 1024
RATIO_MIN_BYTES = 4 * MiB  # smaller members may compress as well as they like
_READ = 1 * MiB


@dataclass(frozen=True)
class ExtractLimits:
    max_uncompressed_bytes: int = 256 * MiB  # all members of a .docx/.pptx together, once expanded
    max_xml_elements: int = 1_000_000  # XML elements in all parts of a .docx/.pptx
    max_pdf_pages: int = 10_000
    max_stream_bytes: int = 64 * MiB  # one decoded PDF stream (pypdf's filters stop there)
    max_text_bytes: int = 20 * MiB  # extracted text (UTF-8), about OpenAI's 5M tokens per file
    max_members: int = 10_000  # files inside one .docx/.pptx
    max_ratio: int = 200  # expansion of one member of at least RATIO_MIN_BYTES

    @classmethod
    def from_settings(cls, settings: Any) -> ExtractLimits:
        return cls(
            max_uncompressed_bytes=settings.extract_max_uncompressed_mb * MiB,
            max_xml_elements=settings.extract_max_xml_elements,
            max_pdf_pages=settings.extract_max_pdf_pages,
            max_stream_bytes=min(settings.extract_max_uncompressed_mb, 64) * MiB,
            max_text_bytes=settings.extract_max_text_mb * MiB,
        )


def size(n: float) -> str:
    """1.0 GiB, 256 MiB, 12 KiB."""
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(n)} bytes"


def check_archive(filename: str, archive: zipfile.ZipFile, kind: str, limits: ExtractLimits) -> None:
    """Raises IngestError (invalid_file) when the archive of a .docx/.pptx would expand too far."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise _bomb(filename, f"holds {len(members):,} files (limit {limits.max_members:,})", kind)
    total = sum(m.file_size for m in members)
    if total > limits.max_uncompressed_bytes:
        shown = (
            f"expands to {size(total)} (limit {size(limits.max_uncompressed_bytes)}, "
            "--extract-max-uncompressed-mb)"
        )
        raise _bomb(filename, shown, kind)
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size >= RATIO_MIN_BYTES and ratio > limits.max_ratio:
            shown = (
                f"has a part ('{m.filename}') that expands {ratio:,.0f} times, from "
                f"{size(m.compress_size)} to {size(m.file_size)} (limit {limits.max_ratio} times)"
            )
            raise _bomb(filename, shown, kind)
    elements = 0
    for m in members:
        if m.filename.endswith((".xml", ".rels")):
            with archive.open(m) as part:
                elements += count_elements(part)
    if elements > limits.max_xml_elements:
        shown = (
            f"holds {elements:,} XML elements (limit {limits.max_xml_elements:,}, --extract-max-xml-elements)"
        )
        raise _bomb(filename, shown, kind)


def count_elements(stream: IO[bytes]) -> int:
    """Start tags in an XML byte stream, read 1 MiB at a time."""
    count, previous = 0, b""
    while True:
        block = stream.read(_READ)
        if not block:
            break
        data = previous + block
        # "<" opens a start tag unless a "/" (end tag), "?" (declaration) or "!" (comment, CDATA) follows
        count += data.count(b"<") - data.count(b"</") - data.count(b"<?") - data.count(b"<!")
        if data.endswith(b"<"):  # decided by the next block's first byte: count it there
            count -= 1
            previous = b"<"
        else:
            previous = b""
    return count


def check_text(filename: str, text_bytes: int, limits: ExtractLimits) -> None:
    if text_bytes > limits.max_text_bytes:
        raise IngestError(
            "invalid_file",
            f"'{filename}' holds {size(text_bytes)} of text (limit {size(limits.max_text_bytes)}, "
            "--extract-max-text-mb): split it into smaller files.",
        )


def check_pages(filename: str, pages: int, limits: ExtractLimits) -> None:
    if pages > limits.max_pdf_pages:
        raise IngestError(
            "invalid_file",
            f"'{filename}' has {pages:,} pages (limit {limits.max_pdf_pages:,}, --extract-max-pdf-pages): "
            "split it into smaller files.",
        )


def pdf_limits(limits: ExtractLimits) -> AbstractContextManager[Any]:
    """pypdf's decompression caps set to our stream limit, for the current thread (a context variable)."""
    from pypdf import apply_configuration

    most = limits.max_stream_bytes
    return apply_configuration(
        maximum_declared_stream_length=most,
        array_based_stream_maximum_output_length=most,
        zlib_maximum_output_length=most,
        lzw_maximum_output_length=most,
        run_length_maximum_output_length=most,
        jbig2_maximum_output_length=most,
        brotli_maximum_output_length=most,
        image_maximum_buffer_size=most,
    )


def _bomb(filename: str, what: str, kind: str) -> IngestError:
    return IngestError(
        "invalid_file",
        f"'{filename}': the {kind} {what}. It looks like a decompression bomb or a damaged file; "
        "if it is genuine, split it or save it again with fewer embedded files.",
    )
