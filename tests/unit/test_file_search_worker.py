"""The ingestion worker's bookkeeping with a fake pipeline: files indexed a batch at a time, liveness by
lease only (a dead local process's lease is respected too), too many interruptions fail clearly, per-file
errors, transient errors retried then failed clearly, a bad file isolated from its batch, cancel mid-file."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from assistd.protocol.common import PageQuery
from assistd.protocol.vector_stores import FileBatchCreate, VectorStoreCreate
from assistd.services.files import FileService
from assistd.services.ingest_queue import MAX_ATTEMPTS
from assistd.services.messages import MessageService
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.services.vector_stores import VectorStoreService
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.tools.file_search.chunking import Chunk
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.extract import IngestError
from assistd.tools.file_search.ingest import Embedded, Prepared
from tests.support import wait_until


class FakeChunks:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []
        self.dropped: list[str] = []

    def delete_file(self, store_id: str, file_id: str) -> None:
        self.deleted.append((store_id, file_id))

    def drop(self, store_id: str) -> None:
        self.dropped.append(store_id)


class FakeIngestor:
    """The pipeline's three steps, recorded: prepare (per file), embed and write (per batch)."""

    def __init__(self, chunks: FakeChunks) -> None:
        self.store = chunks
        self.calls: list[str] = []  # files prepared
        self.writes: list[list[str]] = []  # file ids of each write (one per batch)
        self.fail: dict[str, Exception] = {}  # prepare fails for these filenames
        self.write_errors: list[Exception] = []  # the next writes raise these
        self.poison: set[str] = set()  # a write that includes one of these file ids raises (not transient)
        self.hold = threading.Event()  # while set, preparing loops on check()
        self.embed_seconds = 0.0

    def prepare(self, filename, data, spec, check=lambda: None) -> list[Chunk]:
        self.calls.append(filename)
        if filename in self.fail:
            raise self.fail[filename]
        while self.hold.is_set():
            check()
            time.sleep(0.02)
        return [Chunk(0, data.decode(), 3), Chunk(1, "more", 1)]

    def embed(self, files: list[Prepared], check=lambda: None) -> list[Embedded]:
        check()
        time.sleep(self.embed_seconds)
        return [Embedded(f, np.zeros((len(f.chunks), 4), dtype=np.float32)) for f in files]

    def write(self, files: list[Embedded]) -> None:
        if self.write_errors:
            raise self.write_errors.pop(0)
        ids = [e.file.file_id for e in files]
        if self.poison & set(ids):
            raise ValueError("Chroma refused a chunk")
        self.writes.append(ids)

    def remove(self, store_id: str, file_id: str) -> None:
        self.store.delete_file(store_id, file_id)


class World:
    def __init__(self, tmp: Path, worker_id: str = "test-host:1:aa", url: str | None = None) -> None:
        self.db = Database(url or f"sqlite:///{tmp / 'db.sqlite'}")
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
        self.ingestor = FakeIngestor(self.chunks)
        self.svc.worker.ingestor = self.ingestor  # type: ignore[assignment]
        self.svc.worker.poll_seconds = 0.1
        self.svc.worker.queue.first_retry_seconds = 0.2
        self.svc.worker.queue.max_retry_seconds = 0.4
        self.svc.worker.write_attempts = 1  # no retry in place: each failed write puts the file back

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
        self, store_id: str, file_id: str, status: str, timeout: float = 60
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


def _wait_batch_done(world: World, store_id: str, batch_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (
        world.svc.files.get_batch("p", store_id, batch_id).file_counts.in_progress
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)


def test_files_are_indexed_in_the_background(world):
    store_id, file_id = _store_with_file(world)
    assert world.row(store_id, file_id).status == "in_progress"  # the API call returned before indexing
    world.svc.start()
    row = world.wait_status(store_id, file_id, "completed")
    assert row.status == "completed" and row.chunk_count == 2 and row.usage_bytes > 0
    assert row.lease_until is None and row.attempts == 1 and row.epoch == 1 and row.retries == 0
    assert world.svc.get("p", store_id).file_counts.in_progress == 0


def test_a_batch_of_files_is_embedded_and_written_together(world):
    ids = [world.upload(f"f{i}.txt", f"text {i}") for i in range(6)]
    store = world.svc.create("p", VectorStoreCreate.parse({}))
    batch = world.svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": ids}))
    world.svc.start()
    _wait_batch_done(world, store.id, batch.id)
    assert world.svc.files.get_batch("p", store.id, batch.id).file_counts.completed == 6
    assert world.ingestor.writes == [sorted(ids)]  # one write for the six files


def test_a_big_batch_is_claimed_a_slice_at_a_time(world):
    world.svc.worker.batch_files = 4
    ids = [world.upload(f"f{i}.txt", f"text {i}") for i in range(10)]
    store = world.svc.create("p", VectorStoreCreate.parse({}))
    batch = world.svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": ids}))
    world.svc.start()
    _wait_batch_done(world, store.id, batch.id)
    assert world.svc.files.get_batch("p", store.id, batch.id).file_counts.completed == 10
    assert [len(w) for w in world.ingestor.writes] == [4, 4, 2]
    assert sorted(f for w in world.ingestor.writes for f in w) == sorted(ids)


def test_a_file_held_by_a_dead_local_process_waits_for_its_lease(world):
    """Liveness is the lease only: a holder's hostname and pid are not trusted (another pid namespace)."""
    store_id, file_id = _store_with_file(world)
    dead = f"{socket.gethostname()}:{_dead_pid()}:ff"
    world.set_row(store_id, file_id, worker_id=dead, lease_until=time.time() + 4, attempts=1, epoch=1)
    world.svc.start()
    time.sleep(0.6)
    assert world.row(store_id, file_id).worker_id == dead and world.ingestor.calls == []
    row = world.wait_status(store_id, file_id, "completed", timeout=60)  # the lease ran out: taken over
    assert row.status == "completed" and row.attempts == 2 and row.epoch == 2
    assert row.worker_id == "test-host:1:aa"


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


def test_a_transient_error_puts_the_file_back_and_it_completes(world):
    store_id, file_id = _store_with_file(world)
    world.ingestor.write_errors = [ConnectionError("[Errno 111] Connection refused")] * 3  # down a while
    world.svc.start()
    row = world.wait_status(store_id, file_id, "completed", timeout=60)
    assert row.status == "completed" and row.retries == 3 and row.attempts == 1
    assert row.last_error is None and world.ingestor.writes == [[file_id]]


def test_a_file_whose_tries_are_used_up_fails_with_a_clear_message(world):
    world.svc.worker.queue.retry_attempts = 2
    store_id, file_id = _store_with_file(world)
    world.ingestor.write_errors = [ConnectionError("[Errno 111] Connection refused")] * 100
    world.svc.start()
    row = world.wait_status(store_id, file_id, "failed", timeout=120)
    assert row.status == "failed" and row.retries == 2
    error = row.last_error
    assert error["code"] == "server_error"
    assert "a.txt" in error["message"] and "2 times" in error["message"] and "unavailable" in error["message"]
    wait_until(lambda: (store_id, file_id) in world.chunks.deleted, "its chunks removed (after `failed`)")


def test_a_file_that_breaks_its_batch_fails_alone(world):
    ids = [world.upload(f"f{i}.txt", f"text {i}") for i in range(4)]
    world.ingestor.poison = {ids[2]}
    store = world.svc.create("p", VectorStoreCreate.parse({}))
    batch = world.svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": ids}))
    world.svc.start()
    _wait_batch_done(world, store.id, batch.id)
    counts = world.svc.files.get_batch("p", store.id, batch.id).file_counts
    assert (counts.completed, counts.failed) == (3, 1)
    bad = world.row(store.id, ids[2])
    assert bad.last_error["code"] == "server_error" and "Chroma refused a chunk" in bad.last_error["message"]


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
    wait_until(lambda: world.row(store.id, file_id).worker_id is not None, "the file claimed")
    cancelled = world.svc.files.cancel_batch("p", store.id, batch.id)
    assert cancelled.status == "cancelled" and cancelled.file_counts.cancelled == 1
    wait_until(lambda: (store.id, file_id) in world.chunks.deleted, "its chunks removed")
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
    assert (row.status, row.worker_id, row.lease_until, row.attempts) == ("in_progress", None, None, 0)
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


def test_indexing_goes_on_across_a_postgres_restart(tmp_path, postgres):
    """A 3 s PostgreSQL restart while a worker indexes: claims, renewals and outcomes wait it out (retried
    transactions, backoff between claims); every file ends completed, none failed."""
    world = World(tmp_path, url=postgres.new_database(f"ingest_{uuid.uuid4().hex[:10]}"))
    try:
        world.svc.worker.batch_files = 2
        world.ingestor.embed_seconds = 0.4  # slow enough that the restart lands in the middle of the work
        ids = [world.upload(f"f{i}.txt", f"text {i}") for i in range(12)]
        store = world.svc.create("p", VectorStoreCreate.parse({}))
        batch = world.svc.files.create_batch("p", store.id, FileBatchCreate.parse({"file_ids": ids}))
        world.svc.start()
        deadline = time.monotonic() + 60
        while not world.ingestor.writes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert world.ingestor.writes, "nothing was indexed before the restart"
        assert world.svc.files.get_batch("p", store.id, batch.id).file_counts.in_progress > 0
        postgres.restart(3)
        _wait_batch_done(world, store.id, batch.id, timeout=180)
        counts = world.svc.files.get_batch("p", store.id, batch.id).file_counts
        assert (counts.completed, counts.failed, counts.in_progress) == (12, 0, 0)
    finally:
        world.svc.close()
        world.db.dispose()


def test_a_file_attached_in_another_process_wakes_the_workers_at_once(tmp_path, postgres):
    """PostgreSQL NOTIFY on attach: a worker that polls only every two minutes still starts within seconds."""
    from assistd.services.ingest_queue import INGEST_CHANNEL
    from assistd.storage.notify import Listener

    url = postgres.new_database(f"ingest_{uuid.uuid4().hex[:10]}")
    api = World(tmp_path / "api", worker_id="api:1:aa", url=url)  # its worker never starts
    worker = World(tmp_path / "worker", worker_id="worker:1:bb", url=url)
    worker.blobs = api.blobs
    worker.svc.worker.blobs = api.blobs  # one shared files dir
    worker.svc.worker.poll_seconds = 120
    listener = Listener(worker.db)
    listener.on(INGEST_CHANNEL, lambda _store_id: worker.svc.worker.wake())
    try:
        listener.start()
        worker.svc.start()
        time.sleep(1.0)  # the worker has looked once and now sleeps until woken
        store_id, file_id = _store_with_file(api)
        row = api.wait_status(store_id, file_id, "completed", timeout=60)
        assert row.status == "completed" and row.worker_id == "worker:1:bb"
    finally:
        listener.stop()
        worker.svc.close()
        api.svc.close()
        worker.db.dispose()
        api.db.dispose()
