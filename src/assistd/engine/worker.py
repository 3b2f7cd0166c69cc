"""The engine of one process: claims waiting jobs (runs, responses) from the database queue when it has
room, executes them on a thread pool, keeps their leases, and sweeps for jobs that expired or whose worker
stopped.

Any number of processes share one queue. A job is claimed by exactly one worker (engine/claims.py
`claim_next`); its lease and the workers' own leases use the database's clock; a worker that stops renewing
is dead to the others, whatever its host or pid. An API-only process (`--role api`) claims nothing: it wakes
the workers (PostgreSQL NOTIFY; workers also poll). What executing a job means is its kind's: a run
(engine/runner.py) or a response (engine/responses/executor.py), found by the job id's prefix."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from assistd.engine.claims import ClaimQueue, LostClaim
from assistd.engine.stopping import StopSignal
from assistd.storage.notify import RUNS, Listener, notify

log = logging.getLogger("assistd.engine")

LOST = "The worker executing it stopped before it ended; it was not finished."
SHUTDOWN = "The server shut down while it was in progress."


class JobKind(Protocol):
    """What the engine needs of a kind of job."""

    def execute(self, job_id: str, signal: StopSignal) -> None: ...

    def finish(
        self,
        job_id: str,
        status: str,
        last_error: dict[str, str] | None = None,
        incomplete_details: dict[str, str] | None = None,
    ) -> bool: ...

    def requeue_unstarted(self, job_id: str, holder: bool = True) -> bool: ...


IDLE_BACKOFF = 4  # an idle claim loop polls at most this many times less often than poll_seconds
PEEK_SECONDS = 0.1  # how often processes sharing a SQLite file look at the queue by a read (RunEngine)
MAX_THREADS = 256  # the most jobs one worker executes at once, whatever its engines' slots


class RunEngine:
    def __init__(
        self,
        store: ClaimQueue,
        kinds: dict[str, JobKind],
        worker_id: str,
        lease_seconds: int,
        capacity: int = 8,
        executes: bool = True,
        listener: Listener | None = None,
        poll_seconds: float | None = None,
        peek_seconds: float | None = None,
    ) -> None:
        self.store = store  # the queue
        self.kinds = kinds  # by the prefix of their ids
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.capacity = capacity
        self.executes = executes
        self.poll_seconds = poll_seconds or (2.0 if store.db.is_postgres else 0.5)
        # Processes sharing one SQLite file cannot wake each other (no NOTIFY): a run that one of them
        # queued without room for it waited for another's poll (up to 2 s idle). With `peek_seconds` the
        # queue is looked at that often by a read (`ClaimQueue.waiting`), and claimed from when a job waits.
        self.peek_seconds = peek_seconds
        # threads start as jobs come (at most one a job): the capacity may grow once an engine at a `url`
        # says how many slots it has (container.py)
        self.pool = ThreadPoolExecutor(max_workers=max(MAX_THREADS, capacity), thread_name_prefix="run")
        self.active: dict[str, StopSignal] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reserved = 0  # room held by claims being made (see _reserve)
        # Runs may wait for room here: a launch found none, or a claim filled all the room it had. A run
        # that ends then wakes the claim loop; else the loop only polls (jobs queued elsewhere, a lost wake).
        self._backlog = True
        self._idle_polls = 0  # claim passes in a row that found nothing (the loop backs off, see _claim_loop)
        self._next_housekeeping = 0.0
        store.on_status = self._seen
        if hasattr(store.bus, "on_lost"):
            store.bus.on_lost = self._lost  # type: ignore[attr-defined]
        if listener is not None and executes:
            listener.on(RUNS, self._notified)

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if not self.executes:
            return
        self.store.heartbeat(self.worker_id, "worker", self.lease_seconds)
        for target, name in ((self._claim_loop, "run-claims"), (self._maintain, "run-maintenance")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            active = dict(self.active)
        started = []
        for run_id, flag in active.items():  # first the runs that never started: another worker runs them
            if self._safely(lambda r=run_id: self._kind(r).requeue_unstarted(r)):
                flag.release = True
                flag.set()
            else:
                started.append((run_id, flag))
        for run_id, flag in started:  # then the others end here; their executors write nothing more
            self._safely(
                lambda r=run_id: self._kind(r).finish(
                    r, "failed", {"code": "server_error", "message": SHUTDOWN}
                )
            )
            flag.release = True
            flag.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=5)
        if self.executes:
            self._safely(lambda: self.store.retire(self.worker_id))

    @staticmethod
    def _safely(action) -> bool:  # type: ignore[no-untyped-def]
        try:
            return bool(action())
        except LostClaim:
            return False
        except Exception as exc:
            log.warning("run engine shutdown: %s", exc)
            return False

    # ---------------------------------------------------------------------------------------- runs
    def launch(self, run_id: str) -> None:
        """A run was queued (created, or given tool outputs): this process takes it at once if it executes
        runs and has room; the other workers are woken in any case (NOTIFY was sent with the run's commit,
        see `wake_others`)."""
        if not self.executes or self._stop.is_set():
            return
        if not self._reserve(1):  # no room: the claim loop takes it when a run ends here
            self._backlog = True
            self._wake.set()
            return
        try:
            for claim in self.store.claim_next(self.worker_id, 1, run_id=run_id):
                self._run(claim.run_id)
        finally:
            self._unreserve(1)

    @staticmethod
    def wake_others(s, db, run_id: str) -> None:  # type: ignore[no-untyped-def]
        """In the transaction that queues a run: wakes every worker when it commits (PostgreSQL)."""
        notify(s, db, RUNS, run_id)

    def cancel(self, run_id: str) -> None:
        """Called after the run row was marked `cancelling`: stops the generation if it runs here; a run
        nobody holds (queued, or waiting for tool outputs) is ended here; the worker holding it elsewhere
        sees the status at its next write or lease renewal."""
        with self._lock:
            flag = self.active.get(run_id)
        if flag is not None:
            flag.set()
            return
        self._kind(run_id).finish(run_id, "cancelled")  # changes nothing if a live worker holds it

    def _kind(self, job_id: str) -> JobKind:
        return next(kind for prefix, kind in self.kinds.items() if job_id.startswith(prefix))

    def _free(self) -> int:
        with self._lock:
            return self.capacity - len(self.active) - self._reserved

    def _reserve(self, wanted: int) -> int:
        """Room for up to `wanted` jobs, held while they are claimed (concurrent launches and the claim loop
        never claim past the capacity together); give it back with `_unreserve` once they run."""
        with self._lock:
            got = max(0, min(wanted, self.capacity - len(self.active) - self._reserved))
            self._reserved += got
            return got

    def _unreserve(self, count: int) -> None:
        with self._lock:
            self._reserved -= count

    def _run(self, run_id: str) -> None:
        """Executes a run this process has just claimed, unless it is executing it already: then that
        execution, when it ends, sees the new claim and executes the run again (`_execute`)."""
        with self._lock:
            if run_id in self.active:
                return
            if self._stop.is_set():  # shutting down: the claim goes back to the queue
                flag = None
            else:
                flag = self.active[run_id] = StopSignal()
        if flag is None:
            self._safely(lambda: self._kind(run_id).requeue_unstarted(run_id))
            return
        try:
            self.pool.submit(self._execute, run_id, self.store.claims.get(run_id))
        except RuntimeError:  # the pool was shut down in between
            with self._lock:
                self.active.pop(run_id, None)
            self._safely(lambda: self._kind(run_id).requeue_unstarted(run_id))

    def _execute(self, run_id: str, claim: object) -> None:
        with self._lock:
            flag = self.active[run_id]
        try:
            self._kind(run_id).execute(run_id, flag)
        except LostClaim:
            log.warning("run %s: this worker lost its claim (lease ran out); it wrote nothing more", run_id)
        except Exception:
            log.exception("run %s crashed the executor", run_id)
        finally:
            self.store.forget(run_id, claim)  # a newer claim of the same run (tool outputs came) stays
            with self._lock:
                self.active.pop(run_id, None)
                again = self.store.holds(run_id)
            if again:
                self._run(run_id)
            elif self._backlog:
                self._wake.set()  # room for a run that waits

    def _seen(self, run_id: str, status: str) -> None:
        if status in ("cancelling", "cancelled"):
            with self._lock:
                flag = self.active.get(run_id)
            if flag is not None:
                flag.set()

    def _lost(self, run_id: str) -> None:
        with self._lock:
            flag = self.active.get(run_id)
        if flag is not None:
            flag.release = True
            flag.set()

    def _notified(self, payload: str) -> None:
        if payload.startswith("cancel:"):
            self._seen(payload[len("cancel:") :], "cancelling")
        else:
            self._backlog = True
            self._wake.set()

    # ------------------------------------------------------------------------------------- claiming
    def _claim_loop(self) -> None:
        """Claims when woken (a run queued here or elsewhere, room freed for runs that wait), else polls:
        every `poll_seconds`, backing off to IDLE_BACKOFF times that while the queue stays empty (the
        maintenance tick claims too, every few seconds; a wake never waits for the poll). With `peek_seconds`,
        a read looks at the queue that often between the polls."""
        next_poll = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + self.poll_seconds * min(IDLE_BACKOFF, 2 ** min(self._idle_polls, 8))
            wait = next_poll - now if self.peek_seconds is None else min(self.peek_seconds, next_poll - now)
            woken = self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not (
                woken or time.monotonic() >= next_poll or (self.peek_seconds is not None and self._peek())
            ):
                continue
            next_poll = 0.0  # (the next wait starts from the backoff claim_waiting leaves)
            try:
                self.claim_waiting()
            except Exception as exc:
                log.warning("claiming runs failed: %s", exc)

    def _peek(self) -> bool:
        """Whether a job waits that this worker may claim (False when the read fails: the poll, every few
        seconds, tells of an outage; ten reads a second would fill the log)."""
        try:
            return self.store.waiting(self.worker_id)
        except Exception as exc:
            log.debug("looking at the queue failed: %s", exc)
            return False

    def claim_waiting(self) -> None:
        """Takes as many waiting runs as this worker has room for, oldest first."""
        free = self._reserve(self.capacity)
        try:
            if free > 0 and not self._stop.is_set():
                self._backlog = False  # (a launch that finds no room meanwhile sets it again)
                try:
                    claims = self.store.claim_next(self.worker_id, free)
                except Exception:
                    self._backlog = True
                    raise
                if len(claims) >= free:  # all the room taken: more may wait
                    self._backlog = True
                self._idle_polls = 0 if claims else self._idle_polls + 1
                for claim in claims:
                    self._run(claim.run_id)
            elif free <= 0:
                self._backlog = True
        finally:
            self._unreserve(free)

    # ---------------------------------------------------------------------------------- maintenance
    def _maintain(self) -> None:
        interval = max(0.5, min(2.0, self.lease_seconds / 3))
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception as exc:
                log.warning("run maintenance failed: %s", exc)

    def tick(self) -> None:
        """Renews this worker's leases, notices cancels from other processes and lost claims, expires
        overdue runs, takes over the runs of workers that stopped."""
        self.store.heartbeat(self.worker_id, "worker", self.lease_seconds)
        with self._lock:
            active = dict(self.active)
        for run_id, status in self.store.renew(self.worker_id).items():
            flag = active.get(run_id)
            if flag is None:
                continue
            if status is None:  # another worker took it over, or it was deleted: write nothing more
                flag.release = True
                flag.set()
            elif status in ("cancelling", "cancelled", "failed", "expired"):
                flag.set()
        for run_id in self.store.overdue():
            if run_id in active:
                active[run_id].set()  # the executor sees the expiry and ends the run as expired
            else:  # only if nobody holds it
                self._each(run_id, lambda r=run_id: self._kind(r).finish(r, "expired"))
        for row in self.store.orphans():
            self._each(row.id, lambda r=row: self._recover(r))
        self.claim_waiting()
        self._housekeeping()

    @staticmethod
    def _each(job_id: str, action) -> None:  # type: ignore[no-untyped-def]
        """One job's share of the maintenance: its failure is logged, the others' go on."""
        try:
            action()
        except Exception as exc:
            log.warning("maintenance of %s failed: %s", job_id, exc)

    def _housekeeping(self) -> None:
        """Once a minute: old job events, long-dead workers and what each kind of job leaves are deleted."""
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + 60
        prune = getattr(self.store.bus, "prune", None)
        if prune is not None:
            prune()
        self.store.sweep_workers()
        for kind in self.kinds.values():  # a kind's own (responses: the unstored ones that ended)
            getattr(kind, "housekeeping", lambda: None)()

    def _recover(self, row) -> None:  # type: ignore[no-untyped-def]
        """A run whose worker's lease ran out: re-queued if it produced nothing, else ended."""
        if row.status == "in_progress" and self._kind(row.id).requeue_unstarted(row.id, holder=False):
            log.warning(
                "run %s lost its worker %s before its first step; it is queued again", row.id, row.worker_id
            )
            self.launch(row.id)
        elif row.status == "cancelling":
            self._kind(row.id).finish(row.id, "cancelled")
        elif self._kind(row.id).finish(row.id, "failed", {"code": "server_error", "message": LOST}):
            log.warning("run %s lost its worker %s; it failed", row.id, row.worker_id)
