"""Hostile files end `invalid_file` with the reason, quickly, and without the server's memory growing:
limits checked before parsing (zip sizes, ratio, XML elements, PDF streams, text), and the parsers run in a
child process whose memory and time are capped (and which a cancelled file stops)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from assistd.protocol.common import PageQuery
from assistd.protocol.vector_stores import FileBatchCreate, VectorStoreCreate
from assistd.services.files import FileService
from assistd.services.messages import MessageService
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.services.vector_stores import VectorStoreService
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.extract import IngestError, extract
from assistd.tools.file_search.extract_process import ProcessExtractor
from assistd.tools.file_search.limits import ExtractLimits, count_elements
from assistd.tools.file_search.store import ChunkStore
from tests.file_search_bombs import broken_xml_docx, flate_bomb_pdf, paragraph_docx, zero_part_docx
from tests.file_search_docs import DOCX_FACT, MARKDOWN, docx_bytes, pdf_bytes, pptx_bytes

MiB = 1024 * 1024
GiB = 1024 * MiB
# Checks off, so that only the process's own caps stand between a bomb and memory.
NO_CHECKS = ExtractLimits(
    max_uncompressed_bytes=64 * GiB, max_xml_elements=10**10, max_ratio=10**6, max_text_bytes=GiB
)


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} missing from /proc/self/status")


@contextmanager
def peak_rss_growth_below(limit: int):
    """Fails when this process's peak RSS grows by `limit` bytes or more inside the block."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak) to the current RSS
    before = _vm("VmHWM")
    yield
    growth = _vm("VmHWM") - before
    assert growth < limit, f"peak RSS grew by {growth / MiB:.0f} MiB"


@pytest.fixture(scope="module")
def zero_bomb(tmp_path_factory) -> bytes:
    data = zero_part_docx(tmp_path_factory.mktemp("bombs") / "zeros.docx").read_bytes()
    assert len(data) < 2 * MiB
    return data


@pytest.fixture(scope="module")
def paragraphs() -> bytes:
    data = paragraph_docx(3_500_000)
    assert len(data) < 200 * 1024
    return data


@pytest.fixture
def extractor():
    ex = ProcessExtractor()
    yield ex
    ex.close()


# ------------------------------------------------------------------------------- checks before parsing
def test_a_zero_filled_gigabyte_part_is_refused_before_parsing(zero_bomb):
    with peak_rss_growth_below(64 * MiB), pytest.raises(IngestError) as info:
        extract("zeros.docx", zero_bomb)
    assert info.value.code == "invalid_file"
    assert "'zeros.docx': the .docx expands to 1.0 GiB (limit 256 MiB" in info.value.message


def test_millions_of_empty_paragraphs_are_refused_before_parsing(paragraphs):
    with peak_rss_growth_below(64 * MiB), pytest.raises(IngestError) as info:
        extract("paras.docx", paragraphs)
    assert info.value.code == "invalid_file"
    assert "has a part ('word/document.xml') that expands" in info.value.message
    # without the ratio check, the element count stops it
    limits = ExtractLimits(max_ratio=10**6)
    with peak_rss_growth_below(64 * MiB), pytest.raises(IngestError) as info:
        extract("paras.docx", paragraphs, limits)
    assert info.value.code == "invalid_file"
    assert "XML elements (limit 1,000,000, --extract-max-xml-elements)" in info.value.message
    assert "holds 3,5" in info.value.message  # 3.5 M paragraphs, and the other parts' elements


def test_an_archive_of_too_many_files_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(10_001):
            archive.writestr(f"word/media/{i}.bin", b"")
    with pytest.raises(IngestError) as info:
        extract("many.pptx", out.getvalue())
    assert info.value.code == "invalid_file"
    assert "'many.pptx': the .pptx holds 10,001 files (limit 10,000)" in info.value.message


def test_broken_xml_is_an_invalid_file():
    with pytest.raises(IngestError) as info:
        extract("cut.docx", broken_xml_docx())
    assert info.value.code == "invalid_file"
    assert "'cut.docx' could not be read as a Word .docx document (XMLSyntaxError" in info.value.message


def test_a_pdf_stream_that_inflates_too_far_is_refused():
    bomb = flate_bomb_pdf(512 * MiB)
    assert len(bomb) < 2 * MiB
    with peak_rss_growth_below(200 * MiB), pytest.raises(IngestError) as info:
        extract("bomb.pdf", bomb)
    assert info.value.code == "invalid_file"
    assert "'bomb.pdf'" in info.value.message and "64 MiB" in info.value.message


def test_too_much_text_and_too_many_pages():
    with pytest.raises(IngestError) as info:
        extract("big.txt", b"word " * (21 * MiB // 5))
    assert info.value.code == "invalid_file"
    assert "holds 21 MiB of text (limit 20 MiB, --extract-max-text-mb)" in info.value.message
    with pytest.raises(IngestError) as info:
        extract("long.pdf", pdf_bytes(("one", "two", "three")), ExtractLimits(max_pdf_pages=2))
    assert "has 3 pages (limit 2, --extract-max-pdf-pages)" in info.value.message


def test_counting_elements_skips_end_tags_declarations_comments_across_blocks():
    xml = b'<?xml version="1.0"?><!-- c --><a x="1"><b/><![CDATA[x]]></a>'
    assert count_elements(io.BytesIO(xml)) == 2
    split_end = b" " * (MiB - 1) + b"</a>"  # the "<" ends the first 1 MiB block, the "/" starts the next
    assert count_elements(io.BytesIO(split_end)) == 0
    assert count_elements(io.BytesIO(b" " * (MiB - 1) + b"<a/>")) == 1


# ---------------------------------------------------------------------- the capped extraction process
def test_the_process_reads_every_format_and_is_reused(extractor):
    slides = pptx_bytes(("Owls", "Bats"))
    html = b"<html><body><h1>Title</h1><p>Body</p></body></html>"
    for name, data in [
        ("a.docx", docx_bytes()),
        ("b.pptx", slides),
        ("c.pdf", pdf_bytes()),
        ("d.html", html),
    ]:
        assert extractor.extract(name, data) == extract(name, data)
    pid = extractor.pid
    assert pid is not None and pid != os.getpid()
    assert DOCX_FACT in extractor.extract("again.docx", docx_bytes())[0].text
    assert extractor.extract("k.md", MARKDOWN.encode())[0].text == MARKDOWN  # plain text: in process
    with pytest.raises(IngestError, match="XMLSyntaxError"):
        extractor.extract("cut.docx", broken_xml_docx())
    assert extractor.pid == pid  # one child for all, errors included


def test_memory_is_capped_in_the_child(zero_bomb):
    extractor = ProcessExtractor(NO_CHECKS, memory_bytes=512 * MiB)
    try:
        with peak_rss_growth_below(64 * MiB), pytest.raises(IngestError) as info:
            extractor.extract("zeros.docx", zero_bomb)
        assert info.value.code == "invalid_file"
        assert "'zeros.docx' needs more than 512 MiB of memory to read (limit, --extract-memory-mb)" in (
            info.value.message
        )
        assert DOCX_FACT in extractor.extract("after.docx", docx_bytes())[0].text  # a fresh child
    finally:
        extractor.close()


def test_time_is_capped_in_the_child(paragraphs):
    extractor = ProcessExtractor(NO_CHECKS, memory_bytes=2 * GiB, timeout_seconds=1)
    try:
        extractor.extract("warm.docx", docx_bytes())  # the child is started (start-up is not timed)
        pid = extractor.pid
        with pytest.raises(IngestError) as info:
            extractor.extract("paras.docx", paragraphs)
        assert info.value.code == "invalid_file"
        assert "Reading the text of 'paras.docx' took longer than 1 s (limit, --extract-timeout-seconds)" in (
            info.value.message
        )
        assert pid is not None and not _alive(pid)
    finally:
        extractor.close()


class Cancelled(Exception):
    pass


def test_a_cancelled_file_stops_its_extraction(paragraphs):
    extractor = ProcessExtractor(NO_CHECKS, memory_bytes=2 * GiB, timeout_seconds=600)
    calls = []

    def check() -> None:
        calls.append(extractor.pid)
        if len(calls) == 2:
            raise Cancelled

    try:
        with pytest.raises(Cancelled):
            extractor.extract("paras.docx", paragraphs, check)
        assert calls[0] is not None and not _alive(calls[0]) and extractor.pid is None
    finally:
        extractor.close()


def test_a_child_that_dies_fails_the_file_not_the_server(paragraphs):
    extractor = ProcessExtractor(NO_CHECKS, memory_bytes=2 * GiB, timeout_seconds=600)
    try:
        extractor.extract("warm.docx", docx_bytes())
        pid = extractor.pid
        assert pid is not None
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(IngestError) as info:
            extractor.extract("paras.docx", paragraphs)
        assert info.value.code == "invalid_file"
        assert "The text extractor was killed by SIGKILL while reading 'paras.docx'" in info.value.message
        assert DOCX_FACT in extractor.extract("after.docx", docx_bytes())[0].text
        assert extractor.pid != pid
    finally:
        extractor.close()


def test_the_limits_come_from_the_settings(tmp_path):
    from assistd.config import Settings

    settings = Settings(
        extract_memory_mb=300,
        extract_timeout_seconds=7,
        extract_max_uncompressed_mb=1,
        extract_max_xml_elements=5,
        extract_max_pdf_pages=1,
        extract_max_text_mb=2,
    )
    extractor = ProcessExtractor.from_settings(settings)
    try:
        assert (extractor.memory_bytes, extractor.timeout_seconds) == (300 * MiB, 7)
        assert extractor.limits == ExtractLimits(
            max_uncompressed_bytes=MiB,
            max_xml_elements=5,
            max_pdf_pages=1,
            max_stream_bytes=MiB,
            max_text_bytes=2 * MiB,
        )
        small_bomb = zero_part_docx(tmp_path / "z.docx", 2 * MiB).read_bytes()
        with pytest.raises(IngestError, match=r"expands to 2\.\d MiB \(limit 1\.0 MiB"):
            extractor.extract("z.docx", small_bomb)
        with pytest.raises(IngestError, match="has 2 pages"):
            extractor.extract("two.pdf", pdf_bytes())
    finally:
        extractor.close()


def test_the_child_does_not_outlive_its_parent():
    code = (
        "import os, sys\n"
        "from assistd.tools.file_search.extract_process import ProcessExtractor\n"
        "from tests.file_search_docs import docx_bytes\n"
        "ex = ProcessExtractor()\n"
        "ex.extract('a.docx', docx_bytes())\n"
        "print(ex.pid, flush=True)\n"
        "os._exit(0)\n"  # no close(): as if the server were killed
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    child = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 60
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------- through the vector store worker
@pytest.fixture(scope="module")
def embedder() -> Embedder:
    embedder = Embedder()
    embedder.encode_documents(["warm up"])  # the model is loaded before memory is measured
    return embedder


def test_a_batch_of_bombs_fails_file_by_file_and_the_good_file_is_indexed(
    tmp_path, embedder, zero_bomb, paragraphs
):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.create_schema()
    blobs = BlobStore(tmp_path / "files")
    resources = ToolResourceResolver()
    messages = MessageService(db, resources)
    threads = ThreadService(db, resources, messages)
    files = FileService(db, blobs, 10**8)
    svc = VectorStoreService(db, blobs, ChunkStore(tmp_path / "chroma"), embedder, "host:1:x")
    svc.install(resources, files, messages, threads)
    svc.worker.poll_seconds = 0.1
    uploads = {
        "kitchen.md": MARKDOWN.encode(),
        "zeros.docx": zero_bomb,
        "paras.docx": paragraphs,
        "cut.docx": broken_xml_docx(),
        "bomb.pdf": flate_bomb_pdf(),
        "notes.docx": docx_bytes(),
    }
    ids = {files.upload("p", name, "assistants", io.BytesIO(data)).id: name for name, data in uploads.items()}
    store = svc.create("p", VectorStoreCreate.parse({}))
    svc.start()
    try:
        with peak_rss_growth_below(200 * MiB):
            svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": list(ids)}))
            deadline = time.monotonic() + 300
            while svc.get("p", store.id).file_counts.in_progress and time.monotonic() < deadline:
                time.sleep(0.1)
        listed = svc.files.list("p", store.id, PageQuery(limit=100)).data
        status = {ids[f.id]: (f.status, f.last_error) for f in listed}
        assert status["kitchen.md"] == ("completed", None) and status["notes.docx"] == ("completed", None)
        reasons = {
            "zeros.docx": "expands to 1.0 GiB (limit 256 MiB",
            "paras.docx": "that expands",
            "cut.docx": "XMLSyntaxError",
            "bomb.pdf": "64 MiB",
        }
        for name, reason in reasons.items():
            state, error = status[name]
            assert state == "failed" and error["code"] == "invalid_file", (name, error)
            assert name in error["message"] and reason in error["message"], (name, error)
        hits = svc.search("p", [store.id], "What is the Falcon project launch code?")
        assert any("AZURE-7731" in hit.text for hit in hits)
    finally:
        svc.close()
