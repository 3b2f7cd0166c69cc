"""The queue of vector store files to index, in the database: claims, leases, fencing, outcomes, retries.

A file waits `in_progress` with no live lease. A worker claims up to N of them at once, oldest first, in one
statement (`UPDATE ... WHERE (store, id) IN (SELECT ... FOR UPDATE SKIP LOCKED)` on PostgreSQL; the same
UPDATE on SQLite, where writers take turns): each claimed row gets the worker's id, `epoch + 1` and a lease on
the DATABASE's clock. Every later write for the file names (worker_id, epoch): a worker that lost the file
(lease ran out and another took it, cancelled, detached, re-attached) changes nothing. Liveness is the lease
only: nothing trusts hostnames or pids.

A transient failure (Chroma or the database unreachable) puts the file back with `not_before` = now +
backoff (FIRST_RETRY_SECONDS doubling up to MAX_RETRY_SECONDS) and `retries + 1`; after `retry_attempts`
tries it fails with `server_error`. A claim that ends without any outcome (the process died) counts in
`attempts`; after MAX_ATTEMPTS such starts the file fails instead of looping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, tuple_, update
from sqlmodel import select

from assistd.ids import now
from assistd.storage.clock import db_now
from assistd.storage.db import Database
from assistd.storage.retry import retrying
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.storage.vector_stores import VectorStoreRow

INGEST_CHANNEL = "assistd_ingest"  # PostgreSQL NOTIFY: files were attached (payload: store id)
MAX_ATTEMPTS = 3  # starts without an outcome (crashes) before a file fails
RETRY_ATTEMPTS = 10  # tries of a file that keeps meeting transient errors
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


def retry_delay(retries: int, first: float = FIRST_RETRY_SECONDS, most: float = MAX_RETRY_SECONDS) -> float:
    """Seconds before try number `retries + 1` (retries = transient failures so far, >= 1)."""
    return min(most, first * 2 ** max(0, retries - 1))


def give_up_after(
    attempts: int, first: float = FIRST_RETRY_SECONDS, most: float = MAX_RETRY_SECONDS
) -> float:
    """Seconds of waiting between the first and the last try of a file that always meets transient errors."""
    return sum(retry_delay(n, first, most) for n in range(1, attempts))


@dataclass
class Claim:
    """One file held by this worker: its key, what indexing needs, and the epoch that fences its writes."""

    store_id: str
    file_id: str
    filename: str
    chunking: dict[str, Any] | None
    attempts: int
    retries: int
    epoch: int
    lost: bool = field(default=False, compare=False)  # set when a renewal finds it no longer ours

    @property
    def key(self) -> tuple[str, str]:
        return self.store_id, self.file_id


@dataclass
class Outcome:
    """A file indexed: its chunk count and usage (chunk text bytes + vector bytes)."""

    claim: Claim
    chunks: int
    usage_bytes: int


class IngestQueue:
    def __init__(
        self,
        db: Database,
        worker_id: str,
        lease_seconds: float = 60.0,
        retry_attempts: int = RETRY_ATTEMPTS,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.retry_attempts = retry_attempts
        self.first_retry_seconds = first_retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.on_failed: Callable[[int], None] | None = None  # told how many files just failed (metrics)

    def _write(self, fn: Any, what: str) -> Any:
        """A short transaction, retried whole across a brief database outage (about 20 s)."""
        return retrying(fn, what=what)

    # ------------------------------------------------------------------------------------------- claims
    def claim(self, limit: int) -> list[Claim]:
        """Takes up to `limit` claimable files, oldest first; none taken twice by concurrent workers."""
        T = VectorStoreFileRow
        clock = db_now()
        due = (
            T.status == "in_progress",
            or_(T.lease_until.is_(None), T.lease_until < clock),
            or_(T.not_before.is_(None), T.not_before <= clock),
        )
        probe = select(T.id).where(*due).limit(1)
        pick = (
            select(T.vector_store_id, T.id)
            .where(*due)
            .order_by(T.created_at, T.vector_store_id, T.id)
            .limit(limit)
        )
        if self.db.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            update(T)
            .where(tuple_(T.vector_store_id, T.id).in_(pick))
            .values(
                worker_id=self.worker_id,
                epoch=T.epoch + 1,
                attempts=T.attempts + 1,
                lease_until=db_now() + self.lease_seconds,
                not_before=None,
            )
            .returning(
                T.vector_store_id, T.id, T.filename, T.chunking_strategy, T.attempts, T.retries, T.epoch
            )
        )

        def run() -> list[Claim]:
            with self.db.session() as s:
                if s.execute(probe).first() is None:
                    return []  # nothing to claim: no write (SQLite's write lock is shared by every process)
            with self.db.session() as s:
                return [Claim(*row) for row in s.execute(stmt).all()]

        claims = self._write(run, "claiming files to index")
        claims.sort(key=lambda c: (c.store_id, c.file_id))
        return claims

    def renew(self, claims: Iterable[Claim]) -> list[Claim]:
        """Extends the leases of the files this worker holds; marks (and returns) those newly lost."""
        held = list(claims)
        if not held:
            return []
        T = VectorStoreFileRow
        stmt = (
            update(T)
            .where(T.worker_id == self.worker_id, T.status == "in_progress")
            .values(lease_until=db_now() + self.lease_seconds)
            .returning(T.vector_store_id, T.id, T.epoch)
        )
        with self.db.session() as s:
            ours = {(store, file, epoch) for store, file, epoch in s.execute(stmt).all()}
        lost = [c for c in held if not c.lost and (c.store_id, c.file_id, c.epoch) not in ours]
        for claim in lost:
            claim.lost = True
        return lost

    def _mine(self, claim: Claim) -> Any:
        T = VectorStoreFileRow
        return and_(
            T.vector_store_id == claim.store_id,
            T.id == claim.file_id,
            T.status == "in_progress",
            T.worker_id == self.worker_id,
            T.epoch == claim.epoch,
        )

    # ------------------------------------------------------------------------------------------ outcomes
    def complete(self, outcomes: list[Outcome], in_transaction: Any = None) -> list[Outcome]:
        """Marks indexed files `completed` in one transaction; returns those that were still ours (the
        others were cancelled, detached or taken over meanwhile: their chunks are the caller's to drop).
        `in_transaction(session, kept)` runs inside the same transaction (the keyword index)."""
        T = VectorStoreFileRow

        def run() -> list[Outcome]:
            kept: list[Outcome] = []
            with self.db.session() as s:
                for out in outcomes:
                    done = s.execute(
                        update(T)
                        .where(self._mine(out.claim))
                        .values(
                            status="completed",
                            usage_bytes=out.usage_bytes,
                            chunk_count=out.chunks,
                            last_error=None,
                            lease_until=None,
                            not_before=None,
                        )
                    ).rowcount
                    if done == 1:
                        kept.append(out)
                self._touch_stores(s, {o.claim.store_id for o in kept})
                if in_transaction is not None and kept:
                    in_transaction(s, kept)
            return kept

        return self._write(run, "recording indexed files") if outcomes else []

    def fail(self, claim: Claim, code: str, message: str) -> bool:
        """The file ends `failed` with `last_error`; False when it was no longer ours."""
        T = VectorStoreFileRow

        def run() -> bool:
            with self.db.session() as s:
                done = s.execute(
                    update(T)
                    .where(self._mine(claim))
                    .values(
                        status="failed",
                        last_error={"code": code, "message": message},
                        lease_until=None,
                        not_before=None,
                    )
                ).rowcount
                if done == 1:
                    self._touch_stores(s, {claim.store_id})
                return done == 1

        failed = self._write(run, "recording a failed file")
        self._failed(int(failed))
        return failed

    def retry_later(self, claims: list[Claim], reason: str) -> tuple[list[Claim], list[Claim]]:
        """After a transient failure: each file goes back to the queue with a not-before time, or fails
        when its tries are used up. Returns (requeued, failed); files no longer ours are in neither."""
        T = VectorStoreFileRow
        requeued: list[Claim] = []
        failed: list[Claim] = []

        def run() -> None:
            requeued.clear()
            failed.clear()
            with self.db.session() as s:
                for claim in claims:
                    tries = claim.retries + 1
                    if tries >= self.retry_attempts:
                        waited = give_up_after(tries, self.first_retry_seconds, self.max_retry_seconds)
                        message = (
                            f"Indexing '{claim.filename}' failed {tries} times over about "
                            f"{_duration(waited)} because a service it needs was unavailable; last error: "
                            f"{reason}. Attach the file again to retry."
                        )
                        values: dict[str, Any] = dict(
                            status="failed",
                            retries=tries,
                            last_error={"code": "server_error", "message": message},
                            lease_until=None,
                            not_before=None,
                        )
                        target = failed
                    else:
                        delay = retry_delay(tries, self.first_retry_seconds, self.max_retry_seconds)
                        values = dict(
                            worker_id=None,
                            lease_until=None,
                            retries=tries,
                            attempts=T.attempts - 1,  # this start ended with an outcome: no crash
                            not_before=db_now() + delay,
                        )
                        target = requeued
                    if s.execute(update(T).where(self._mine(claim)).values(**values)).rowcount == 1:
                        target.append(claim)
                self._touch_stores(s, {c.store_id for c in failed})

        self._write(run, "putting files back in the queue")
        self._failed(len(failed))
        return requeued, failed

    def _failed(self, count: int) -> None:
        if count and self.on_failed is not None:
            self.on_failed(count)

    def release(self, claims: list[Claim]) -> None:
        """A clean stop: the files become claimable at once, and this start is not counted as a crash."""
        T = VectorStoreFileRow
        if not claims:
            return
        with self.db.session() as s:
            for claim in claims:
                s.execute(
                    update(T)
                    .where(self._mine(claim))
                    .values(worker_id=None, lease_until=None, attempts=T.attempts - 1)
                )

    def cleanup_for(self, claim: Claim) -> str:
        """What to do with the chunks we may have written for a file we lost: "drop_store" (the store is
        gone), "delete_file" (detached, cancelled or failed) or "keep" (indexed again, or completed by the
        worker that took it over: its chunks are that worker's)."""
        with self.db.session() as s:
            if s.get(VectorStoreRow, claim.store_id) is None:
                return "drop_store"
            row = s.get(VectorStoreFileRow, claim.key)
            if row is None:
                return "delete_file"
            if row.status == "in_progress" or (row.status == "completed" and row.epoch != claim.epoch):
                return "keep"
            return "delete_file"

    @staticmethod
    def _touch_stores(s: Any, store_ids: set[str]) -> None:
        """Search caches key on chunks_version; an index change also counts as store activity."""
        if not store_ids:
            return
        V = VectorStoreRow
        s.execute(
            update(V)
            .where(V.id.in_(sorted(store_ids)))
            .values(chunks_version=V.chunks_version + 1, last_active_at=now())
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds)} seconds"
    return f"{round(seconds / 60)} minutes"
