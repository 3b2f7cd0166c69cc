"""The run engine of one server process: executes the runs it claims on a thread pool, keeps their leases
alive, and sweeps for runs that expired or whose process died."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from assistd.engine.runner import RunExecutor, StopSignal
from assistd.engine.store import RunStore
from assistd.leases import held_by_dead_local_process

log = logging.getLogger("assistd.engine")

LOST = "The server process executing this run stopped before the run ended; it was not finished."
SHUTDOWN = "The server shut down while this run was in progress."


class RunEngine:
    def __init__(
        self,
        store: RunStore,
        executor: RunExecutor,
        worker_id: str,
        lease_seconds: int,
        max_parallel: int = 8,
    ) -> None:
        self.store = store
        self.executor = executor
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="run")
        self.active: dict[str, StopSignal] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.recover_dead_local_workers()
        self._thread = threading.Thread(target=self._maintain, name="run-maintenance", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            active = dict(self.active)
        started = []
        for run_id, flag in active.items():  # first the runs that never started: the next server runs them
            if self.store.requeue_unstarted(run_id):
                flag.release = True
                flag.set()
            else:
                started.append((run_id, flag))
        for run_id, flag in started:  # then the others end (which frees the model for nobody)
            self.store.finish(run_id, "failed", {"code": "server_error", "message": SHUTDOWN})
            flag.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---------------------------------------------------------------------------------------- runs
    def launch(self, run_id: str, force: bool = False) -> None:
        """Claims the run for this process and executes it in the background."""
        if not self.store.claim(run_id, self.worker_id, self.lease_seconds, force=force):
            return
        with self._lock:
            if run_id in self.active:
                return
            self.active[run_id] = StopSignal()
        self.pool.submit(self._execute, run_id)

    def cancel(self, run_id: str) -> None:
        """Called after the run row was marked `cancelling`: stops the generation if it runs here."""
        with self._lock:
            flag = self.active.get(run_id)
        if flag is not None:
            flag.set()
            return
        row = self.store.run(run_id)
        if row.status == "cancelling" and (row.lease_until is None or row.lease_until < time.time()):
            self.store.finish(run_id, "cancelled")  # nobody executes it: end it here

    def _execute(self, run_id: str) -> None:
        with self._lock:
            flag = self.active[run_id]
        try:
            self.executor.execute(run_id, flag)
        except Exception:
            log.exception("run %s crashed the executor", run_id)
        finally:
            with self._lock:
                self.active.pop(run_id, None)

    # ---------------------------------------------------------------------------------- maintenance
    def _maintain(self) -> None:
        interval = max(0.5, min(2.0, self.lease_seconds / 3))
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:
                log.exception("run maintenance failed")

    def tick(self) -> None:
        """Renews leases, notices cancels from other processes, expires overdue runs, recovers orphans."""
        with self._lock:
            active = dict(self.active)
        statuses = self.store.renew(list(active), self.worker_id, self.lease_seconds)
        for run_id, status in statuses.items():
            if status in ("cancelling", "cancelled", "failed", "expired"):
                active[run_id].set()
        for run_id in self.store.overdue():
            if run_id in active:
                active[run_id].set()  # the executor sees the expiry and ends the run as expired
            else:
                self.store.finish(run_id, "expired")
        for row in self.store.orphans():
            self._recover(row)

    def _recover(self, row, force: bool = False) -> None:
        if row.status == "queued":
            self.launch(row.id, force=force)  # nothing was done yet: run it here
        elif row.status == "in_progress" and self.store.requeue_unstarted(row.id):
            log.warning(
                "run %s lost its worker %s before its first step; running it again", row.id, row.worker_id
            )
            self.launch(row.id)  # it produced nothing: it runs as if it had never started
        elif row.status == "cancelling":
            self.store.finish(row.id, "cancelled")
        else:
            log.warning("run %s lost its worker %s; failing it", row.id, row.worker_id)
            self.store.finish(row.id, "failed", {"code": "server_error", "message": LOST})

    def recover_dead_local_workers(self) -> None:
        """At start: runs held by a process of this host that no longer exists are recovered at once,
        without waiting for their lease to run out."""
        for row in self.store.leased_runs():
            if held_by_dead_local_process(row.worker_id, self.worker_id):
                self._recover(row, force=True)
