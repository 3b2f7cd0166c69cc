"""Stopping a run: the signal the worker sets, the exception that ends a run's execution, and the checks
made before each step and after each generation (cancelled by the client, or past `expires_at`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from assistd.engine.store import RunStore
from assistd.llm.backend import GenerationResult
from assistd.storage.clock import db_time
from assistd.storage.runs import RunRow


class StopSignal(threading.Event):
    """Set to stop a run's execution. With `release`, the run was given back to the queue (the server is
    stopping before the run started): the executor leaves it as it is instead of ending it."""

    release = False


class RunStopped(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status  # "cancelled" or "expired"


def expired(run: RunRow) -> bool:
    return run.expires_at is not None and db_time() >= run.expires_at


def check(run: RunRow, cancel: threading.Event) -> None:
    """Ends the run's execution if it was cancelled or has expired."""
    if expired(run):  # first: the sweeper also sets the signal of a run whose time is up
        raise RunStopped("expired")
    if cancel.is_set():
        raise RunStopped("cancelled")


def stopping(run: RunRow, cancel: threading.Event) -> Callable[[], bool]:
    """The predicate a generation (and the wait for the model) polls to stop early."""
    return lambda: cancel.is_set() or expired(run)


def begin(store: RunStore, run: RunRow, cancel: threading.Event) -> None:
    """The run is being worked on now (it has the model, or a tool step opens): `queued` becomes
    `in_progress` (once; later calls change nothing). A cancel that came while it waited ends it."""
    check(run, cancel)
    if store.start(run.id).status == "cancelling":
        raise RunStopped("cancelled")


def after_generation(run: RunRow, result: GenerationResult) -> None:
    """A generation that stopped early ended the run: expired if its time is up, else cancelled."""
    if result.finish_reason == "cancelled":
        if expired(run):
            raise RunStopped("expired")
        raise RunStopped("cancelled")
