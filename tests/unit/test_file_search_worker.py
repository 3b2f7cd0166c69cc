"""The ingestion worker's bookkeeping with a fake pipeline: restart recovery (dead local process, expired
lease), live leases respected, too many interruptions fail clearly, per-file errors, cancel mid-file."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from assistd.protocol.common import PageQuery
from assistd.protocol.vector_stores import FileBatchCreate, VectorStoreCreate
from assistd.services.files import FileService
from assistd.services.messages import MessageService
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.services.vector_store_ingest import MAX_ATTEMPTS
from assistd.services.vector_stores import VectorStoreService
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.extract import IngestError
from assistd.tools.file_search.ingest import IngestResult


class FakeChunks:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []
        self.dropped: list[str] = []

    def delete_file(self, store_id: str, file_id: str) -> None:
        self.deleted.append((store_id, file_id))

    def drop(self, store_id: str) -> None:
        self.dropped.append(store_id)


class FakeIngestor:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: dict[str, IngestError] = {}
        self.hold = threading.Event()  # while set, ingestion loops on the heartbeat

    def ingest(self, store_id, file_id, filename, data, spec, heartbeat=lambda: True) -> IngestResult:
        self.calls.append(filename)
        if filename in self.fail:
            raise self.fail[filename]
        while self.hold.is_set():
            if not heartbeat():
                from assistd.tools.file_search.ingest import Abandoned

                raise Abandoned(file_id)
            time.sleep(0.02)
        return IngestResult(chunks=2, usage_bytes=len(data) + 10)


class World:
    def __init__(self, tmp: Path, worker_id: str = "test-host:1:aa") -> None:
        self.db = Database(f"sqlite:///{tmp / 'db.sqlite'}")
        self.db.create_schema()
        self.blobs = BlobStore(tmp / "files")
        resources = ToolResourceResolver()
        messages = MessageService(self.db, resources)
        threads = ThreadService(self.db, resources, messages)
        self.files = FileService(self.db, self.blobs, 10**7)
        self.chunks = FakeChunks()
        self.svc = VectorStoreService(
            self.db, self.blobs, self.chunks, Embedder(), worker_id, lease_seconds=2
        )  # type: ignore[arg-type]
        self.svc.install(resources, self.files, messages, threads)
        self.ingestor = FakeIngestor()
        self.svc.worker.ingestor = self.ingestor  # type: ignore[assignment]
        self.svc.worker.poll_seconds = 0.1

    def upload(self, name: str, text: str = "some text") -> str:
        return self.files.upload("p", name, "assistants", io.BytesIO(text.encode())).id

    def row(self, store_id: str, file_id: str) -> VectorStoreFileRow:
        with self.db.session() as s:
            row = s.get(VectorStoreFileRow, (store_id, file_id))
            assert row is not None
            return row

    def set_row(self, store_id: str, file_id: str, **values) -> None:
        with self.db.session() as s:
            row = s.get(VectorStoreFileRow, (store_id, file_id))
            for key, value in values.items():
                setattr(row, key, value)
            s.add(row)

    def wait_status(
        self, store_id: str, file_id: str, status: str, timeout: float = 10
    ) -> VectorStoreFileRow:
        deadline = time.monotonic() + timeout
        while True:
            row = self.row(store_id, file_id)
            if row.status == status or time.monotonic() > deadline:
                return row
            time.sleep(0.05)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.svc.close()


def _store_with_file(world: World, name: str = "a.txt") -> tuple[str, str]:
    file_id = world.upload(name)
    store = world.svc.create("p", VectorStoreCreate.parse({"file_ids": [file_id]}))
    return store.id, file_id


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_files_are_indexed_in_the_background(world):
    store_id, file_id = _store_with_file(world)
    assert world.row(store_id, file_id).status == "in_progress"  # the API call returned before indexing
    world.svc.start()
    row = world.wait_status(store_id, file_id, "completed")
    assert row.status == "completed" and row.chunk_count == 2 and row.usage_bytes == len("some text") + 10
    assert row.lease_until is None and row.attempts == 1
    assert world.svc.get("p", store_id).file_counts.in_progress == 0


def test_a_file_held_by_a_dead_local_process_is_resumed_at_start(world):
    store_id, file_id = _store_with_file(world)
    dead = f"{socket.gethostname()}:{_dead_pid()}:ff"
    world.set_row(store_id, file_id, worker_id=dead, lease_until=time.time() + 3600, attempts=1)
    world.svc.start()
    row = world.wait_status(store_id, file_id, "completed", timeout=5)
    assert row.status == "completed" and row.attempts == 2 and row.worker_id == "test-host:1:aa"


def test_a_live_lease_is_respected_until_it_runs_out(world):
    store_id, file_id = _store_with_file(world)
    world.set_row(store_id, file_id, worker_id="other-host:123:ab", lease_until=time.time() + 1.5, attempts=1)
    world.svc.start()
    time.sleep(0.8)
    assert world.row(store_id, file_id).status == "in_progress" and world.ingestor.calls == []
    row = world.wait_status(store_id, file_id, "completed", timeout=10)  # the lease expired: taken over
    assert row.status == "completed" and row.attempts == 2


def test_a_file_interrupted_too_often_fails_clearly(world):
    store_id, file_id = _store_with_file(world)
    world.set_row(
        store_id, file_id, worker_id="other-host:1:ab", lease_until=time.time() - 1, attempts=MAX_ATTEMPTS
    )
    world.svc.start()
    row = world.wait_status(store_id, file_id, "failed")
    assert row.last_error["code"] == "server_error"
    assert "interrupted" in row.last_error["message"] and "a.txt" in row.last_error["message"]
    assert world.ingestor.calls == []


def test_one_bad_file_does_not_affect_the_batch(world):
    ids = [world.upload(n) for n in ("good.txt", "bad.pdf", "also.md")]
    world.ingestor.fail["bad.pdf"] = IngestError("invalid_file", "'bad.pdf' could not be read as a PDF")
    store = world.svc.create("p", VectorStoreCreate.parse({}))
    batch = world.svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": ids}))
    world.svc.start()
    deadline = time.monotonic() + 10
    while (
        world.svc.files.get_batch("p", store.id, batch.id).file_counts.in_progress
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    done = world.svc.files.get_batch("p", store.id, batch.id)
    assert (done.status, done.file_counts.completed, done.file_counts.failed) == ("completed", 2, 1)
    failed = world.svc.files.list("p", store.id, PageQuery(), status="failed").data
    assert [f.id for f in failed] == [ids[1]]
    assert failed[0].last_error == {"code": "invalid_file", "message": "'bad.pdf' could not be read as a PDF"}
    assert (store.id, ids[1]) in world.chunks.deleted  # partial chunks of a failed file are removed


def test_cancel_while_indexing_drops_the_chunks(world):
    file_id = world.upload("long.txt")
    store = world.svc.create("p", VectorStoreCreate.parse({}))
    batch = world.svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": [file_id]}))
    world.ingestor.hold.set()
    world.svc.start()
    deadline = time.monotonic() + 5
    while world.row(store.id, file_id).worker_id is None and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled = world.svc.files.cancel_batch("p", store.id, batch.id)
    assert cancelled.status == "cancelled" and cancelled.file_counts.cancelled == 1
    deadline = time.monotonic() + 5
    while (store.id, file_id) not in world.chunks.deleted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (store.id, file_id) in world.chunks.deleted
    assert world.row(store.id, file_id).status == "cancelled"


def test_a_clean_stop_releases_the_file_for_the_next_start(world):
    store_id, file_id = _store_with_file(world)
    world.ingestor.hold.set()
    world.svc.start()
    deadline = time.monotonic() + 5
    while world.row(store_id, file_id).worker_id is None and time.monotonic() < deadline:
        time.sleep(0.02)
    world.svc.close()
    row = world.row(store_id, file_id)
    assert (row.status, row.lease_until, row.attempts) == ("in_progress", None, 0)
    assert world.chunks.deleted == []  # kept for the next worker, which starts the file over


def test_expired_stores(world):
    from assistd.errors import InvalidRequest
    from assistd.protocol.vector_stores import VectorStoreSearch
    from assistd.storage.vector_stores import VectorStoreRow

    store = world.svc.create(
        "p", VectorStoreCreate.parse({"expires_after": {"anchor": "last_active_at", "days": 1}})
    )
    assert store.status == "completed" and store.expires_at == store.last_active_at + 86400
    with world.db.session() as s:
        row = s.get(VectorStoreRow, store.id)
        row.last_active_at -= 2 * 86400
        s.add(row)
    expired = world.svc.get("p", store.id)
    assert expired.status == "expired" and expired.expires_at < time.time()
    with pytest.raises(InvalidRequest, match="expired"):
        world.svc.search_store("p", store.id, VectorStoreSearch.parse({"query": "x"}))
    assert world.svc.search("p", [store.id], "x") == []


def test_embedding_model_is_not_loaded_by_start_or_api_calls(world):
    world.svc.start()
    world.svc.create("p", VectorStoreCreate.parse({"name": "x"}))
    world.svc.list("p", PageQuery())
    assert not world.svc.embedder.loaded
