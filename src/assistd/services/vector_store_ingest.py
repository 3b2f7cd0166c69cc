"""The ingestion worker: a background thread that indexes vector store files left `in_progress`.

A file is claimed with an atomic UPDATE that sets `worker_id` and a lease (`lease_until`), renewed after
every embedding batch. Nothing is held in memory that the database does not know, so:
- the API call that attaches a file returns at once; the worker is woken after the commit;
- several server processes share the work (a claim succeeds for one of them only);
- after a crash the file's lease runs out and any worker resumes it from the start (its partial chunks are
  deleted first); at start-up, files held by a dead process of this host are taken back at once;
- a file interrupted MAX_ATTEMPTS times fails with `server_error` and a message instead of looping.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import select

from assistd.ids import now
from assistd.leases import held_by_dead_local_process
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.storage.vector_stores import VectorStoreRow
from assistd.tools.file_search.chunking import ChunkingSpec
from assistd.tools.file_search.extract import IngestError
from assistd.tools.file_search.ingest import Abandoned, Ingestor
from assistd.tools.file_search.store import ChunkStore

log = logging.getLogger("assistd.file_search")

MAX_ATTEMPTS = 3


@dataclass
class Job:
    store_id: str
    file_id: str
    filename: str
    chunking: dict[str, Any] | None
    attempts: int


class IngestWorker:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        chunks: ChunkStore,
        ingestor: Ingestor,
        worker_id: str,
        lease_seconds: float = 60.0,
        poll_seconds: float = 2.0,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.chunks = chunks
        self.ingestor = ingestor
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.recover_dead_local_workers()
        self._thread = threading.Thread(target=self._loop, name="file-search-ingest", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def recover_dead_local_workers(self) -> int:
        """Files held by a process of this host that no longer runs become claimable at once."""
        freed = 0
        with self.db.session() as s:
            rows = s.exec(
                select(VectorStoreFileRow).where(
                    VectorStoreFileRow.status == "in_progress", VectorStoreFileRow.worker_id.is_not(None)
                )
            )
            for row in rows:
                if held_by_dead_local_process(row.worker_id, self.worker_id):
                    row.lease_until = None
                    s.add(row)
                    freed += 1
        if freed:
            log.info("resuming %d file(s) left in_progress by a stopped process", freed)
        return freed

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.claim()
            except Exception:
                log.exception("file_search: claiming a file failed")
                job = None
            if job is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            try:
                self.process(job)
            except Exception:  # a database error while finishing: the lease runs out and it is retried
                log.exception("file_search: processing %s failed", job.file_id)

    # -------------------------------------------------------------------------------------------- claims
    def claim(self) -> Job | None:
        """Takes one claimable file (in_progress, no live lease), or returns None."""
        T = VectorStoreFileRow
        free = or_(T.lease_until.is_(None), T.lease_until < time.time())
        with self.db.session() as s:
            candidates = list(
                s.exec(select(T).where(T.status == "in_progress", free).order_by(T.created_at).limit(8))
            )
        for row in candidates:
            with self.db.session() as s:
                taken = s.execute(
                    update(T)
                    .where(
                        T.vector_store_id == row.vector_store_id,
                        T.id == row.id,
                        T.status == "in_progress",
                        free,
                    )
                    .values(
                        worker_id=self.worker_id,
                        lease_until=time.time() + self.lease_seconds,
                        attempts=T.attempts + 1,
                    )
                ).rowcount
            if taken != 1:
                continue
            job = Job(row.vector_store_id, row.id, row.filename, row.chunking_strategy, row.attempts + 1)
            if job.attempts > MAX_ATTEMPTS:
                self.finish_failed(
                    job,
                    "server_error",
                    f"Indexing '{job.filename}' was interrupted {MAX_ATTEMPTS} times "
                    "(the server stopped while working on it). Attach the file again to retry; "
                    "if it keeps failing, split it.",
                )
                continue
            return job
        return None

    def renew(self, job: Job) -> bool:
        """Extends the lease; False when the file is no longer ours to index (cancelled, detached, taken)."""
        T = VectorStoreFileRow
        with self.db.session() as s:
            kept = s.execute(
                update(T)
                .where(
                    T.vector_store_id == job.store_id,
                    T.id == job.file_id,
                    T.status == "in_progress",
                    T.worker_id == self.worker_id,
                )
                .values(lease_until=time.time() + self.lease_seconds)
            ).rowcount
        return kept == 1 and not self._stop.is_set()

    # ----------------------------------------------------------------------------------------- the work
    def process(self, job: Job) -> None:
        try:
            data = self.blobs.path(job.file_id).read_bytes()
        except OSError:
            self.finish_failed(
                job, "invalid_file", f"The content of '{job.filename}' is missing on the server."
            )
            return
        spec = ChunkingSpec.from_wire(job.chunking)
        started = time.monotonic()
        try:
            result = self.ingestor.ingest(
                job.store_id, job.file_id, job.filename, data, spec, heartbeat=lambda: self.renew(job)
            )
        except IngestError as exc:
            self.finish_failed(job, exc.code, exc.message)
        except Abandoned:
            self.discard(job)
        except Exception as exc:
            log.exception("file_search: indexing %s failed", job.file_id)
            self.finish_failed(
                job, "server_error", f"Indexing '{job.filename}' failed: {type(exc).__name__}: {exc}"
            )
        else:
            if self._finish(job, "completed", usage=result.usage_bytes, chunks=result.chunks):
                log.info(
                    "indexed %s (%s): %d chunks in %.1fs",
                    job.file_id,
                    job.filename,
                    result.chunks,
                    time.monotonic() - started,
                )
            else:
                self.discard(job)

    def finish_failed(self, job: Job, code: str, message: str) -> None:
        if not self._finish(job, "failed", error={"code": code, "message": message}):
            return
        try:
            self.chunks.delete_file(job.store_id, job.file_id)
        except Exception:
            log.exception("file_search: removing chunks of failed file %s", job.file_id)

    def _finish(
        self, job: Job, status: str, usage: int = 0, chunks: int = 0, error: dict[str, str] | None = None
    ) -> bool:
        with self.db.session() as s:
            row = s.get(VectorStoreFileRow, (job.store_id, job.file_id))
            if row is None or row.status != "in_progress" or row.worker_id != self.worker_id:
                return False
            row.status, row.usage_bytes, row.chunk_count, row.last_error = status, usage, chunks, error
            row.lease_until = None
            s.add(row)
            store = s.get(VectorStoreRow, job.store_id)
            if store is not None:
                store.chunks_version += 1
                store.last_active_at = now()
                s.add(store)
            return True

    def discard(self, job: Job) -> None:
        """The file was cancelled or detached while we indexed it: its chunks go (its store too if gone).
        When the server is stopping instead, the file is released for the next worker to resume."""
        with self.db.session() as s:
            store_gone = s.get(VectorStoreRow, job.store_id) is None
            row = s.get(VectorStoreFileRow, (job.store_id, job.file_id))
            ours_again = row is not None and row.status == "in_progress"
            if ours_again and row is not None and row.worker_id == self.worker_id and self._stop.is_set():
                row.lease_until, row.attempts = None, max(0, row.attempts - 1)  # a clean stop is no crash
                s.add(row)
        try:
            if store_gone:
                self.chunks.drop(job.store_id)
            elif not ours_again:  # re-attached meanwhile: the next ingestion starts clean anyway
                self.chunks.delete_file(job.store_id, job.file_id)
        except Exception:
            log.exception("file_search: cleaning up %s", job.file_id)
