"""The ingestion worker: background threads that index vector store files, many files at a time.

The files wait in the database (services/ingest_queue.py); the worker holds nothing the database does not
know, so the API call that attaches a file returns at once, any number of processes share the work, and
after a crash the file's lease runs out and any worker starts it over. Three threads, one pipeline:
- prepare: claims up to `batch_files` files (oldest first) when the embedding stage is about to need work,
  reads and extracts them (capped child process) and chunks them;
- embed: embeds the chunks of the whole batch together, writes them to Chroma in few large upserts and to
  the keyword index, and marks the files completed in one transaction. While it embeds a batch, the prepare
  thread readies the next one;
- lease: renews the leases of every file held (database clock) and flags those lost (cancelled, detached,
  taken over), which the other two stop working on within a second or one embedding call.
Several worker processes share one big batch: each claims a slice of `batch_files` files.

Errors: a file that cannot be read fails alone (`invalid_file`). A transient error (Chroma or the database
unreachable) puts the batch's files back in the queue with a not-before time; they fail with `server_error`
only when their tries are used up (ingest_queue.give_up_after says how long that takes). Any other error in
a batch is retried file by file, so that only the file that causes it fails.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from assistd.services.ingest_queue import MAX_ATTEMPTS, RETRY_ATTEMPTS, Claim, IngestQueue, Outcome
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.retry import is_transient, retrying
from assistd.tools.file_search.chunking import ChunkingSpec
from assistd.tools.file_search.extract import IngestError
from assistd.tools.file_search.ingest import Abandoned, Ingestor, Prepared
from assistd.tools.file_search.store import chroma_transient

log = logging.getLogger("assistd.file_search")

BATCH_FILES = 16
WRITE_ATTEMPTS = 5  # a write is retried in place for about 7 s (vectors kept) before the files go back


def transient(exc: BaseException) -> bool:
    """Worth retrying later: the database or Chroma unreachable or restarting (a 5xx from Chroma's server)."""
    return is_transient(exc) or chroma_transient(exc)


class IngestWorker:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        ingestor: Ingestor,
        worker_id: str,
        lease_seconds: float = 60.0,
        poll_seconds: float = 2.0,
        batch_files: int = BATCH_FILES,
        retry_attempts: int = RETRY_ATTEMPTS,
        first_retry_seconds: float | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.ingestor = ingestor
        self.worker_id = worker_id
        retry = {} if first_retry_seconds is None else {"first_retry_seconds": first_retry_seconds}
        self.queue = IngestQueue(db, worker_id, lease_seconds, retry_attempts, **retry)
        self.poll_seconds = poll_seconds
        self.batch_files = batch_files
        self.write_attempts = WRITE_ATTEMPTS
        self.renew_seconds = max(0.2, min(2.0, lease_seconds / 4))
        self._held: dict[tuple[str, str], Claim] = {}
        self._held_lock = threading.Lock()
        self._ready: queue.Queue[list[Prepared]] = queue.Queue(maxsize=1)
        self._idle = threading.Event()  # set while the embed stage has nothing queued
        self._idle.set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for name, target in (
            ("prepare", self._prepare_loop),
            ("embed", self._embed_loop),
            ("lease", self._lease_loop),
        ):
            thread = threading.Thread(target=target, name=f"file-search-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops within about one embedding call; the files held go back to the queue for the next start."""
        self._stop.set()
        self._wake.set()
        self._idle.set()
        for thread in self._threads:
            thread.join(timeout)
        leftover = self._held_claims()
        try:
            self.queue.release(leftover)
        except Exception:  # the leases run out instead
            log.warning("file_search: could not release %d file(s) at stop", len(leftover))
        self._forget(leftover)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ---------------------------------------------------------------------------------------- the claims
    def _hold(self, claims: list[Claim]) -> None:
        with self._held_lock:
            for claim in claims:
                self._held[claim.key] = claim

    def _forget(self, claims: list[Claim]) -> None:
        with self._held_lock:
            for claim in claims:
                if self._held.get(claim.key) is claim:
                    del self._held[claim.key]

    def _held_claims(self) -> list[Claim]:
        with self._held_lock:
            return list(self._held.values())

    def _lease_loop(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            held = self._held_claims()
            if not held:
                continue
            try:
                lost = self.queue.renew(held)
            except Exception as exc:  # the database is away: keep working, the fenced writes decide
                log.warning("file_search: renewing leases failed (%s: %s)", type(exc).__name__, exc)
                continue
            for claim in lost:
                log.info("file_search: %s (%s) is no longer ours to index", claim.file_id, claim.filename)

    def _check(self, claims: list[Claim]) -> Callable[[], None]:
        def check() -> None:
            if self._stop.is_set() or all(c.lost for c in claims):
                raise Abandoned()

        return check

    # ------------------------------------------------------------------------------------------- prepare
    def _prepare_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._idle.wait()  # claim only when the embed stage is about to need the next batch
            if self._stop.is_set():
                return
            try:
                claims = self.queue.claim(self.batch_files)
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("file_search: claiming files failed (%s: %s)", type(exc).__name__, exc)
                self._stop.wait(min(30.0, self.poll_seconds * 2**failures))
                continue
            if not claims:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            self._hold(claims)
            try:
                prepared = self._prepare(claims)
            except Exception:
                log.exception("file_search: preparing a batch failed")
                prepared = []
            if prepared:
                self._idle.clear()
                self._hand_over(prepared)

    def _hand_over(self, batch: list[Prepared]) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(batch, timeout=0.5)
                return
            except queue.Full:
                continue

    def _prepare(self, claims: list[Claim]) -> list[Prepared]:
        out: list[Prepared] = []
        for claim in claims:
            if self._stop.is_set():
                return out  # the held claims are released by stop()
            if claim.attempts > MAX_ATTEMPTS:
                self._fail(
                    claim,
                    "server_error",
                    f"Indexing '{claim.filename}' was interrupted {MAX_ATTEMPTS} times (the server stopped "
                    "while working on it). Attach the file again to retry; if it keeps failing, split it.",
                )
                continue
            file = self._prepare_one(claim)
            if file is not None:
                out.append(file)
        return out

    def _prepare_one(self, claim: Claim) -> Prepared | None:
        try:
            data = self.blobs.path(claim.file_id).read_bytes()
        except OSError:
            self._fail(claim, "invalid_file", f"The content of '{claim.filename}' is missing on the server.")
            return None
        try:
            chunks = self.ingestor.prepare(
                claim.filename, data, ChunkingSpec.from_wire(claim.chunking), self._check([claim])
            )
        except IngestError as exc:
            self._fail(claim, exc.code, exc.message)
            return None
        except Abandoned:
            if not self._stop.is_set():
                self._lost([claim])
            return None
        except Exception as exc:
            log.exception("file_search: reading %s failed", claim.file_id)
            self._fail(
                claim, "server_error", f"Indexing '{claim.filename}' failed: {type(exc).__name__}: {exc}"
            )
            return None
        return Prepared(claim, claim.store_id, claim.file_id, claim.filename, chunks)

    # --------------------------------------------------------------------------------------------- embed
    def _embed_loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._ready.get(timeout=0.5)
            except queue.Empty:
                self._idle.set()
                continue
            self._idle.set()  # the prepare stage readies the next batch while this one is embedded
            try:
                self.index(batch)
            except Exception:
                log.exception("file_search: indexing a batch failed")

    def index(self, batch: list[Prepared]) -> None:
        """Embeds, writes and records a batch of prepared files (the embed stage's work)."""
        claims = [f.key for f in batch]
        started = time.monotonic()
        try:
            self._index(batch)
        except Abandoned:
            if not self._stop.is_set():
                self._lost([c for c in claims if c.lost])
            return
        except Exception as exc:
            if transient(exc):
                self._retry_later(claims, exc)
            elif len(batch) > 1:  # find the file that causes it: the others go through
                log.warning(
                    "file_search: a batch failed (%s: %s); indexing its files one by one",
                    type(exc).__name__,
                    exc,
                )
                for file in batch:
                    self.index([file])
            else:
                log.exception("file_search: indexing %s failed", claims[0].file_id)
                claim = claims[0]
                self._fail(
                    claim, "server_error", f"Indexing '{claim.filename}' failed: {type(exc).__name__}: {exc}"
                )
            return
        chunks = sum(len(f.chunks) for f in batch)
        log.info("indexed %d file(s), %d chunks in %.1fs", len(batch), chunks, time.monotonic() - started)

    def _index(self, batch: list[Prepared]) -> None:
        claims = [f.key for f in batch]
        live = [f for f in batch if not f.key.lost]
        embedded = self.ingestor.embed(live, self._check(claims))
        embedded = [e for e in embedded if not e.file.key.lost]
        if self._stop.is_set():
            raise Abandoned()
        if embedded:
            retrying(
                lambda: self.ingestor.write(embedded),
                what="writing chunks",
                attempts=self.write_attempts,
                first_delay=0.5,
                max_delay=4.0,
                transient=transient,
            )
        outcomes = [Outcome(e.file.key, len(e.file.chunks), e.usage_bytes) for e in embedded]
        kept = self.queue.complete(outcomes)
        done = {o.claim.key for o in kept}
        self._forget([o.claim for o in kept])
        self._lost([c for c in claims if c.key not in done])

    # -------------------------------------------------------------------------------------------- endings
    def _fail(self, claim: Claim, code: str, message: str) -> None:
        try:
            ours = self.queue.fail(claim, code, message)
        except Exception as exc:  # the database stayed away: the lease runs out and the file is retried
            log.warning("file_search: recording %s as failed failed (%s)", claim.file_id, exc)
            self._forget([claim])
            return
        self._forget([claim])
        if not ours:
            self._lost([claim])
            return
        self._remove_chunks(claim)

    def _retry_later(self, claims: list[Claim], exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        try:
            requeued, failed = self.queue.retry_later(claims, reason)
        except Exception as again:
            log.warning(
                "file_search: could not put %d file(s) back (%s); their leases run out", len(claims), again
            )
            self._forget(claims)
            return
        self._forget(claims)
        if requeued:
            log.warning("file_search: %d file(s) will be retried (%s)", len(requeued), reason)
        for claim in failed:
            log.warning(
                "file_search: %s (%s) failed: out of retries (%s)", claim.file_id, claim.filename, reason
            )
            self._remove_chunks(claim)

    def _lost(self, claims: list[Claim]) -> None:
        """Files cancelled, detached or taken over while we worked on them: drop what we wrote for them
        (their store's collection if the store is gone), unless the file is being indexed again or was
        completed by the worker that took it over (ingest_queue.cleanup_for)."""
        self._forget(claims)
        for claim in claims:
            try:
                action = self.queue.cleanup_for(claim)
                if action == "drop_store":
                    self.ingestor.drop_store(claim.store_id)
                elif action == "delete_file":
                    self.ingestor.remove(claim.store_id, claim.file_id)
            except Exception:
                log.exception("file_search: cleaning up %s", claim.file_id)

    def _remove_chunks(self, claim: Claim) -> None:
        try:
            self.ingestor.remove(claim.store_id, claim.file_id)
        except Exception:
            log.exception("file_search: removing chunks of failed file %s", claim.file_id)
