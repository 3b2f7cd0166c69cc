"""The vector store service in-process on the real pieces (SQLite, embedded Chroma, all-MiniLM-L6-v2):
chunks really leave Chroma, PDF pages reach the chunk metadata, the engine's search interface."""

from __future__ import annotations

import io
import time

import pytest

from assistd.protocol.threads import ThreadCreate
from assistd.protocol.vector_stores import FileBatchCreate, VectorStoreCreate, VectorStoreFileCreate
from assistd.services.files import FileService
from assistd.services.messages import MessageService
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.services.vector_stores import VectorStoreService
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.tools.file_search import SearchHit
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.store import ChunkStore
from tests.file_search_docs import pdf_bytes


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()  # loaded once for the module, on first use


@pytest.fixture
def env(tmp_path, embedder):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.create_schema()
    blobs = BlobStore(tmp_path / "files")
    resources = ToolResourceResolver()
    messages = MessageService(db, resources)
    threads = ThreadService(db, resources, messages)
    files = FileService(db, blobs, 10**8)
    svc = VectorStoreService(
        db, blobs, ChunkStore(tmp_path / "chroma"), embedder, "host:1:x", lease_seconds=30
    )
    svc.install(resources, files, messages, threads)
    svc.worker.poll_seconds = 0.1
    svc.start()
    yield svc, files, threads
    svc.close()


def upload(files: FileService, name: str, data: bytes | str, project: str = "p") -> str:
    body = data.encode() if isinstance(data, str) else data
    return files.upload(project, name, "assistants", io.BytesIO(body)).id


def settle(svc: VectorStoreService, store_id: str, project: str = "p", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while svc.get(project, store_id).file_counts.in_progress and time.monotonic() < deadline:
        time.sleep(0.1)
    assert svc.get(project, store_id).file_counts.in_progress == 0


def test_deleting_a_file_removes_its_chunks_from_chroma(env):
    svc, files, _ = env
    fid = upload(files, "otters.txt", "Sea otters hold hands while sleeping. " * 40)
    other = upload(files, "stay.txt", "This file stays indexed.")
    stores = [svc.create("p", VectorStoreCreate.parse({"file_ids": [fid, other]})).id for _ in range(2)]
    for store_id in stores:
        settle(svc, store_id)
        assert svc.chunks.count(store_id, fid) >= 1
    files.delete("p", fid)
    for store_id in stores:
        assert svc.chunks.count(store_id, fid) == 0
        assert svc.chunks.count(store_id, other) == 1
        assert svc.get("p", store_id).file_counts.total == 1
    # detaching removes the chunks too; deleting the store drops its collection
    svc.files.delete("p", stores[0], other)
    assert svc.chunks.count(stores[0]) == 0
    svc.delete("p", stores[1])
    assert stores[1] not in {c.name for c in svc.chunks.client.list_collections()}


def test_pdf_page_numbers_are_kept_in_chunk_metadata(env):
    svc, files, _ = env
    page_one = "Apples ripen in the orchard during September. " * 12
    page_two = "The reservoir pumps run on Tuesdays at dawn. " * 12
    fid = upload(files, "farm.pdf", pdf_bytes((page_one, page_two)))
    store = svc.create("p", VectorStoreCreate.parse({}))
    strategy = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    svc.files.create(
        "p", store.id, VectorStoreFileCreate.parse({"file_id": fid, "chunking_strategy": strategy})
    )
    settle(svc, store.id)
    chunks = svc.chunks.file_chunks(store.id, fid)
    assert len(chunks) >= 2
    assert {c.meta["page"] for c in chunks} == {1, 2}
    assert all(c.meta["filename"] == "farm.pdf" and c.meta["tokens"] <= 100 for c in chunks)
    hits = svc.search("p", [store.id], "When do the reservoir pumps run?", max_num_results=3)
    assert hits[0].page == 2 and "Tuesdays" in hits[0].text


def test_engine_search_interface(env):
    svc, files, threads = env
    a = upload(files, "rust.md", "# Rust\nThe borrow checker enforces ownership rules at compile time.")
    b = upload(files, "python.md", "# Python\nThe global interpreter lock serialises bytecode execution.")
    store = svc.create("p", VectorStoreCreate.parse({}))
    svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": [a, b]}))
    settle(svc, store.id)
    hits = svc.search("p", [store.id, "vs_unknown"], "what does the borrow checker do", max_num_results=20)
    assert isinstance(hits[0], SearchHit)
    assert (hits[0].file_id, hits[0].filename) == (a, "rust.md")
    assert "borrow checker" in hits[0].text and hits[0].attributes == {}
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert svc.search("p", [store.id], "borrow checker", score_threshold=0.999) == []
    assert svc.search("other-project", [store.id], "borrow checker") == []  # another project's store
    assert svc.search("p", [], "anything") == []

    thread = threads.create(
        "p", ThreadCreate.parse({"tool_resources": {"file_search": {"vector_store_ids": [store.id]}}})
    )
    assert svc.thread_store_ids("p", thread.id) == [store.id]
    assert svc.thread_store_ids("other-project", thread.id) == []
    assert svc.thread_store_ids("p", "thread_missing") == []


def test_hybrid_search_finds_exact_rare_tokens(env):
    svc, files, _ = env
    texts = [f"Maintenance note {i}: the conveyor belt was inspected and lubricated." for i in range(30)]
    texts[17] = "Maintenance note 17: replacement part XQ-4471-B was ordered for the conveyor."
    ids = [upload(files, f"note{i}.txt", t) for i, t in enumerate(texts)]
    store = svc.create("p", VectorStoreCreate.parse({}))
    svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": ids}))
    settle(svc, store.id)
    hits = svc.search("p", [store.id], "XQ-4471-B", max_num_results=3)
    assert hits[0].file_id == ids[17]
