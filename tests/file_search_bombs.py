"""Hostile files for the file_search tests, built small: the zip bombs are streamed, never held expanded.

- zero_part_docx: a valid .docx plus a 1 GiB zero-filled part, about 1 MB on disk;
- paragraph_docx: a .docx whose body is millions of empty paragraphs (3.5 M: about 70 KB);
- broken_xml_docx: a .docx whose document.xml is cut off mid-element;
- flate_bomb_pdf: a one-page PDF whose content stream inflates to hundreds of MiB of blanks.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

from tests.file_search_docs import docx_bytes

MiB = 1024 * 1024
_BODY_START = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
)
_BODY_END = b"</w:body></w:document>"


def _rewrite_docx(target, replace: dict[str, bytes] | None = None, drop: str = "") -> zipfile.ZipFile:
    """An open zip at `target` holding a valid .docx's members, with `replace`d member contents, less
    `drop` (a member the caller writes itself)."""
    replace = replace or {}
    out = zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(io.BytesIO(docx_bytes())) as source:
        for info in source.infolist():
            if info.filename != drop:
                out.writestr(info.filename, replace.get(info.filename, source.read(info.filename)))
    return out


def zero_part_docx(path: Path, size: int = 1024 * MiB) -> Path:
    """A .docx with a `size`-byte zero-filled image part that the document refers to (so python-docx loads
    it), written 1 MiB at a time: the test stays small."""
    with zipfile.ZipFile(io.BytesIO(docx_bytes())) as source:
        rels = source.read("word/_rels/document.xml.rels")
        types = source.read("[Content_Types].xml")
    rels = rels.replace(
        b"</Relationships>",
        b'<Relationship Id="rIdZeros" Target="media/zeros.bin" Type='
        b'"http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"/></Relationships>',
    )
    types = types.replace(b"</Types>", b'<Default Extension="bin" ContentType="image/png"/></Types>')
    replace = {"word/_rels/document.xml.rels": rels, "[Content_Types].xml": types}
    with (
        _rewrite_docx(path, replace) as archive,
        archive.open("word/media/zeros.bin", "w", force_zip64=True) as part,
    ):
        block = bytes(MiB)
        for _ in range(size // MiB):
            part.write(block)
    return path


def paragraph_docx(paragraphs: int = 3_500_000) -> bytes:
    """A .docx whose body is `paragraphs` empty paragraphs (and nothing else)."""
    out = io.BytesIO()
    with (
        _rewrite_docx(out, drop="word/document.xml") as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as part,
    ):
        part.write(_BODY_START)
        block = b"<w:p/>" * 100_000
        for _ in range(paragraphs // 100_000):
            part.write(block)
        part.write(b"<w:p/>" * (paragraphs % 100_000))
        part.write(_BODY_END)
    return out.getvalue()


def broken_xml_docx() -> bytes:
    out = io.BytesIO()
    cut = _BODY_START + b"<w:p><w:r><w:t>The text stops here"
    with _rewrite_docx(out, {"word/document.xml": cut}):
        pass
    return out.getvalue()


def flate_bomb_pdf(inflated: int = 512 * MiB) -> bytes:
    """A one-page PDF whose content stream is `inflated` bytes of blanks, deflated (about 1/1000)."""
    compressor = zlib.compressobj(9)
    block = b" " * MiB
    stream = b"".join(compressor.compress(block) for _ in range(inflated // MiB)) + compressor.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
