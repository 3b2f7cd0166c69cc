"""The work queue: jobs (runs of the Assistants API, responses of the Responses API) are rows that workers
claim, hold under a lease and write under a fence.

A job is claimed by exactly one worker (`claim_next`): its row gets the worker's id, an epoch one higher
than before and a lease (database clock) that the worker renews. Every write of the executing worker is
one transaction that starts by renewing the lease WHERE the claim still holds (`tx`, `fence`); a worker that
lost the job (its lease ran out and another worker took it over, or the job was deleted) gets LostClaim and
writes nothing. Writes by a node that does not hold the job (the sweeper ending an orphan, a cancel of a job
nobody executes) happen only while nobody holds it, and end any claim (epoch + 1). Transient database
failures are retried (storage/retry.py).

What a run or a response writes is elsewhere (engine/store.py, engine/responses/tape.py): both write through
this queue's `tx`, and so does the event log (engine/event_log.py) for its buffered deltas."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Float, Integer, and_, bindparam, delete, exists, or_, update
from sqlmodel import Session, select

from assistd.engine.events import Event, EventBus
from assistd.storage.clock import db_now, read_now
from assistd.storage.containers import ContainerRow
from assistd.storage.db import Database, after_commit
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.storage.responses import ResponseRow
from assistd.storage.retry import retrying
from assistd.storage.runs import RunRow
from assistd.storage.workers import WorkerRow

T = TypeVar("T")

log = logging.getLogger("assistd.engine")

# The tables of the queue, by the prefix of their ids.
TABLES: dict[str, Any] = {"run_": RunRow, "resp_": ResponseRow}
WAITING = ("queued", "cancelling")
EXECUTING = ("in_progress", "cancelling")


def table_of(job_id: str) -> Any:
    for prefix, table in TABLES.items():
        if job_id.startswith(prefix):
            return table
    raise ValueError(f"not a job id: {job_id!r}")


class LostClaim(Exception):
    """The worker no longer holds the job: it must write nothing more for it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"{job_id} is no longer held by this worker")
        self.run_id = job_id


@dataclass(frozen=True)
class Claim:
    run_id: str  # the job's id (a run's or a response's)
    worker_id: str
    epoch: int


@dataclass(frozen=True)
class JobEnd:
    """A job that just ended (its end committed, once): what metrics and the job log need of it."""

    id: str
    status: str
    model: str
    project: str
    parent: str | None  # a run's thread, a response's conversation
    usage: dict[str, Any] | None
    error_code: str | None

    @classmethod
    def of(cls, row: Any) -> JobEnd:
        error = getattr(row, "last_error", None) or getattr(row, "error", None)
        return cls(
            id=row.id,
            status=row.status,
            model=row.model,
            project=row.project,
            parent=getattr(row, "thread_id", None) or getattr(row, "conversation_id", None),
            usage=dict(row.usage) if row.usage else None,
            error_code=error.get("code") if isinstance(error, dict) else None,
        )


def unheld(table: Any) -> Any:
    return or_(table.worker_id == None, table.lease_until < db_now())  # noqa: E711


class _Statements:
    """The queue's hot statements for one table, built once (Core, parameters bound at execution): every
    fenced write and every claim runs one of them, and building a statement costs more than running it."""

    def __init__(self, table: Any, waiting: list[Any]) -> None:
        t = table.__table__
        lease = db_now() + bindparam("lease", type_=Float)
        self.fence = (
            update(t)
            .where(t.c.id == bindparam("job"), t.c.worker_id == bindparam("holder"))
            .where(t.c.epoch == bindparam("held_epoch"))
            .values(lease_until=lease)
            .returning(t.c.status)
        )
        pick = (
            select(t.c.id)
            .where(*waiting)
            .order_by(t.c.created_at, t.c.id)
            .limit(bindparam("limit", type_=Integer))
            .with_for_update(skip_locked=True)
        )
        self.claim, self.claim_one = (
            update(t)
            .where(t.c.id.in_(p.scalar_subquery()))
            .values(worker_id=bindparam("holder"), epoch=t.c.epoch + 1, lease_until=lease)
            .returning(t.c.created_at, t.c.id, t.c.epoch)
            for p in (pick, pick.where(t.c.id == bindparam("job")))
        )
        self.give_back = update(t).where(t.c.id == bindparam("job")).values(worker_id=None, lease_until=None)


class ClaimQueue:
    def __init__(self, db: Database, bus: EventBus, lease_seconds: float = 30.0) -> None:
        self.db = db
        self.bus = bus
        self.lease_seconds = lease_seconds
        self.claims: dict[str, Claim] = {}  # the jobs this process holds, by id
        self.ended: set[str] = set()  # jobs this process held until a moment ago: their writes fail
        self._claims_lock = threading.Lock()
        self._cached: dict[Any, _Statements] = {}
        self._peek: Any = None  # `waiting`'s statement, built at its first use
        # Told the status a fenced write found (a cancel from another node reaches the executor this way).
        self.on_status: Callable[[str, str], None] | None = None
        # Told of each job's end after its commit, by the process that ended it (metrics, the job log).
        self.on_end: list[Callable[[JobEnd], None]] = []
        # Held by a transaction that locks several of this process's job rows (the lease renewal, the event
        # log's flush of every streaming job): two such transactions never wait for each other crosswise.
        self.many_rows = threading.Lock()
        if hasattr(bus, "fence"):
            bus.fence = self.fence  # type: ignore[attr-defined]
            bus.many_rows = self.many_rows  # type: ignore[attr-defined]

    # ----------------------------------------------------------------------------------- transactions
    def tx(self, job_id: str, body: Callable[[Session, list[Event]], T], guard: str = "claim") -> T | None:
        """Runs `body` in one transaction, retried on transient failures, with the events it collects.
        guard "claim": fenced by this process's claim on the job, if it holds one; "unheld": only while
        nobody holds the job (None is returned otherwise), and any claim ends; "any": unfenced (a client's
        cancel, which the holder sees at its next write)."""
        table = table_of(job_id)

        def once() -> T | None:
            with self.bus.ordering(job_id), self.db.session() as s:
                if guard == "unheld":
                    taken = s.execute(
                        update(table)
                        .where(table.id == job_id, unheld(table))
                        .values(worker_id=None, lease_until=None, epoch=table.epoch + 1)
                        .returning(table.id)
                    ).first()
                    if taken is None:
                        return None
                elif guard == "claim":
                    self.fence(s, job_id)
                events: list[Event] = []
                result = body(s, events)
                self.bus.emit(s, job_id, events)
                return result

        return retrying(once, what=f"writing {job_id}")

    def fence(self, s: Session, job_id: str) -> str | None:
        """Renews the lease where this process's claim still holds; LostClaim when it does not. Returns
        the job's status as the fence found it (None: this process holds no claim on the job, unfenced)."""
        claim = self.claims.get(job_id)
        if claim is None:
            if job_id in self.ended:
                raise LostClaim(job_id)
            return None
        params = {
            "job": job_id,
            "holder": claim.worker_id,
            "held_epoch": claim.epoch,
            "lease": self.lease_seconds,
        }
        found = s.connection().execute(self._statements(table_of(job_id)).fence, params).first()
        if found is None:
            raise LostClaim(job_id)
        if self.on_status is not None and found[0] in ("cancelling", "cancelled"):
            self.on_status(job_id, found[0])
        return found[0]

    def _statements(self, table: Any) -> _Statements:
        statements = self._cached.get(table)
        if statements is None:  # (a race builds it twice, harmlessly)
            waiting = self._waiting(table, bindparam("holder"))
            statements = self._cached[table] = _Statements(table, waiting)
        return statements

    def report_end_at_commit(self, s: Session, end: JobEnd) -> None:
        """Reports the job's end (metrics, the job log) when the transaction `s` that ends it commits, before
        its events reach the streams and waiting requests (the bus's hook comes after the body's): a client
        that saw the end and reads /metrics finds the job counted."""
        after_commit(s, lambda: self.report_end(end))

    def report_end(self, end: JobEnd) -> None:
        for hook in self.on_end:
            try:
                hook(end)
            except Exception:
                log.exception("a job-end hook failed for %s", end.id)

    def holds(self, job_id: str) -> bool:
        return job_id in self.claims

    def release(self, job_id: str) -> None:
        """The job was ended or given back: this process's writes for it fail from now on."""
        with self._claims_lock:
            if self.claims.pop(job_id, None) is not None:
                self.ended.add(job_id)

    def forget(self, job_id: str, claim: object = None) -> None:
        """The execution of the job under `claim` is over in this process (a newer claim of the same job,
        taken meanwhile, stays); what it left unwritten is dropped."""
        with self._claims_lock:
            current = self.claims.get(job_id)
            if current is claim or current is None:  # (None: released when it ended)
                self.claims.pop(job_id, None)
                self.ended.discard(job_id)
                self.bus.discard(job_id)

    def requeue_unstarted(
        self, job_id: str, produced: Any, requeued: Callable[[Session, Any], Event], holder: bool = True
    ) -> bool:
        """Gives a job that has not started back to the queue, free for any worker to claim: a `queued` job
        loses its claim, an `in_progress` job that `produced` nothing (a SQL condition: its worker stopped
        before it wrote a step, an item) becomes `queued` again, with the event `requeued` makes of its row.
        False, changing nothing, for any other job. `holder`: this process holds the job (it gives it
        back); else only a job nobody holds is given back."""
        table = table_of(job_id)

        def body(s: Session, events: list[Event]) -> bool:
            self.bus.emit(s, job_id, [])  # its deltas still buffered are written first: they count
            free = {"worker_id": None, "lease_until": None, "epoch": table.epoch + 1}
            back = s.execute(
                update(table)
                .where(table.id == job_id, table.status == "in_progress", ~produced)
                .values(status="queued", started_at=None, **free)
                .execution_options(synchronize_session=False)
            ).rowcount
            waiting = s.execute(
                update(table)
                .where(table.id == job_id, table.status == "queued")
                .values(**free)
                .execution_options(synchronize_session=False)
            ).rowcount
            if back:
                row = s.get(table, job_id)
                if row is not None:
                    s.refresh(row)
                    events.append(requeued(s, row))
            return bool(back or waiting)

        done = bool(self.tx(job_id, body, guard="claim" if holder else "unheld"))
        if done:
            self.release(job_id)
        return done

    def read(self, what: str, body: Callable[[Session], T]) -> T:
        """A read of the executing worker, retried like its writes (a database restart costs a pause)."""

        def once() -> T:
            with self.db.session() as s:
                return body(s)

        return retrying(once, what=what)

    # ------------------------------------------------------------------------------------- claiming
    def waiting(self, worker_id: str) -> bool:
        """Whether a job waits that this worker may claim: one read, no write (SQLite's writer untouched)."""
        if self._peek is None:  # (a race builds it twice, harmlessly)
            holder = bindparam("holder")
            self._peek = select(
                or_(*(exists().where(*self._waiting(table, holder)) for table in TABLES.values()))
            )
        with self.db.session() as s:
            return bool(s.execute(self._peek, {"holder": worker_id}).scalar())

    def claim_next(self, worker_id: str, limit: int, run_id: str | None = None) -> list[Claim]:
        """Claims up to `limit` waiting jobs, oldest first over every table of the queue (or just the job
        `run_id`): jobs no worker holds; runs whose thread's code interpreter kernel lives on another live
        worker are skipped (they go there). PostgreSQL skips rows other workers are claiming at this
        instant; SQLite serialises writers."""
        if limit <= 0:
            return []
        tables = [table_of(run_id)] if run_id is not None else list(TABLES.values())

        params = {"holder": worker_id, "limit": limit, "lease": self.lease_seconds, "job": run_id}

        def once() -> list[Claim]:
            rows: list[tuple[int, str, int]] = []
            with self.db.session() as s:
                c = s.connection()
                for table in tables:  # each table's oldest, each claim one atomic statement
                    statements = self._statements(table)
                    claim = statements.claim if run_id is None else statements.claim_one
                    rows += [tuple(r) for r in c.execute(claim, params)]
                rows.sort()
                for _, job_id, _ in rows[limit:]:  # the oldest `limit` of all tables are kept: the others
                    give_back = self._statements(table_of(job_id)).give_back  # go back, in the same
                    c.execute(give_back, {"job": job_id})  # transaction (nobody saw them taken)
            return [Claim(rid, worker_id, epoch) for _, rid, epoch in rows[:limit]]  # oldest first

        claims = retrying(once, what="claiming jobs")
        with self._claims_lock:
            for claim in claims:
                self.claims[claim.run_id] = claim
                self.ended.discard(claim.run_id)
        return claims

    @staticmethod
    def _waiting(table: Any, worker_id: Any) -> list[Any]:
        """The conditions of a job this worker (its id, or a bound parameter) may claim."""
        conditions = [table.status.in_(WAITING), unheld(table)]
        if (
            table is ResponseRow
        ):  # a response whose container's kernel lives on another live worker goes there
            kernel_elsewhere = exists().where(
                ContainerRow.id == ResponseRow.container_id,
                ContainerRow.worker_id != worker_id,
                exists().where(WorkerRow.id == ContainerRow.worker_id, WorkerRow.lease_until > db_now()),
            )
            conditions.append(~kernel_elsewhere)
        if table is RunRow:
            kernel_elsewhere = exists().where(
                KernelHomeRow.thread_id == RunRow.thread_id,
                KernelHomeRow.worker_id != worker_id,
                exists().where(WorkerRow.id == KernelHomeRow.worker_id, WorkerRow.lease_until > db_now()),
            )
            conditions.append(~kernel_elsewhere)
        return conditions

    def renew(self, worker_id: str) -> dict[str, str | None]:
        """Extends the leases of the jobs this process holds; the status of each (None: lost)."""
        with self._claims_lock:
            held = list(self.claims.values())
        if not held:
            return {}
        found: dict[str, str] = {}
        with self.many_rows, self.db.session() as s:
            for table in TABLES.values():
                mine = [c for c in held if table_of(c.run_id) is table]
                if not mine:
                    continue
                found.update(
                    s.execute(
                        update(table)
                        .where(
                            or_(*(and_(table.id == c.run_id, table.epoch == c.epoch) for c in mine)),
                            table.worker_id == worker_id,
                        )
                        .values(lease_until=db_now() + self.lease_seconds)
                        .returning(table.id, table.status)
                        .execution_options(synchronize_session=False)
                    ).all()
                )
        return {c.run_id: found.get(c.run_id) for c in held}

    # -------------------------------------------------------------------------------------- workers
    def heartbeat(self, worker_id: str, role: str, lease_seconds: float) -> None:
        """This worker is alive (workers table, database clock); this node's offset to that clock is read."""
        with self.db.session() as s:
            read_now(s)
            row = s.get(WorkerRow, worker_id)
            if row is None:
                row = WorkerRow(id=worker_id, role=role, started_at=0.0, lease_until=0.0)
                s.add(row)
                s.flush()
                s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(started_at=db_now()))  # type: ignore[arg-type]
            s.execute(
                update(WorkerRow)
                .where(WorkerRow.id == worker_id)  # type: ignore[arg-type]
                .values(lease_until=db_now() + lease_seconds)
            )

    def retire(self, worker_id: str) -> None:
        """This worker stops: it is dead to the others at once."""
        with self.db.session() as s:
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(lease_until=0.0))  # type: ignore[arg-type]

    def sweep_workers(self, after_seconds: float = 3600.0) -> None:
        """Forgets workers dead for a while, and where their kernels lived (those kernels died with them)."""
        with self.db.session() as s:
            dead = select(WorkerRow.id).where(WorkerRow.lease_until < db_now() - after_seconds)
            s.execute(delete(KernelHomeRow).where(KernelHomeRow.worker_id.in_(dead)))  # type: ignore[attr-defined]
            s.execute(delete(WorkerRow).where(WorkerRow.lease_until < db_now() - after_seconds))  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------ sweeping
    def orphans(self) -> list[Any]:
        """Jobs that should be executing but whose worker's lease ran out (a crash, a pause, a restart)."""
        found: list[Any] = []
        with self.db.session() as s:
            for table in TABLES.values():
                found += s.exec(select(table).where(table.status.in_(EXECUTING), unheld(table)))
        return found

    def overdue(self) -> list[str]:
        """Jobs past their `expires_at` that have not ended."""
        found: list[str] = []
        with self.db.session() as s:
            for table in TABLES.values():
                found += s.exec(
                    select(table.id).where(
                        table.status.in_(("queued", "in_progress", "requires_action", "cancelling")),
                        table.expires_at != None,  # noqa: E711
                        table.expires_at <= db_now(),
                    )
                )
        return found
