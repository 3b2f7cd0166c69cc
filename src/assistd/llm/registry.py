"""Served models, each loaded once per process, and the gate in front of each: as many generations at
once as its engine has slots (the engine batches them); beyond that, runs wait their turn in arrival
order (and stay `queued`). Nothing else here serialises generation."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from assistd.llm.backend import LLMBackend
from assistd.llm.catalog import ModelCatalog

log = logging.getLogger("assistd.llm")

BackendFactory = Callable[[str], LLMBackend]


class LockAbandoned(Exception):
    """The caller gave up its place in the queue (its run was cancelled or expired while it waited)."""


class FairGate:
    """Up to `slots` holders at once; the others are let in in the order they asked."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()
        self.busy = 0

    @contextmanager
    def hold(self, abandon: Callable[[], bool] | None = None) -> Iterator[None]:
        """Waits for a free slot, first come first served; gives up its place (LockAbandoned) as soon as
        `abandon()` is true."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while not (self._queue[0] is ticket and self.busy < self.slots):
                self._cond.wait(timeout=0.1)
                if abandon is not None and abandon():
                    self._queue.remove(ticket)
                    self._cond.notify_all()
                    raise LockAbandoned()
            self._queue.popleft()
            self.busy += 1
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self.busy -= 1
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        return len(self._queue)


class ModelRegistry:
    def __init__(self, catalog: ModelCatalog, factory: BackendFactory) -> None:
        self.catalog = catalog
        self._factory = factory
        self._loaded: dict[str, LLMBackend] = {}
        self._gates: dict[str, FairGate] = {}
        self._load_lock = threading.Lock()

    def get(self, name: str) -> LLMBackend:
        """The loaded backend for `name`, loading it (starting or reaching its engine) on first use.
        Blocking: call from a worker thread. A failed load is tried again by the next caller."""
        self.catalog.require(name)
        with self._load_lock:
            if name not in self._loaded:
                backend = self._factory(name)
                self._loaded[name] = backend
                self._gates[name] = FairGate(getattr(backend, "slots", 1))
            return self._loaded[name]

    @contextmanager
    def use(self, name: str, abandon: Callable[[], bool] | None = None) -> Iterator[LLMBackend]:
        """One of the model's generation slots for one run's model turn, in arrival order."""
        backend = self.get(name)
        with self._gates[name].hold(abandon):
            yield backend

    def loaded(self, name: str) -> LLMBackend | None:
        """The backend of `name` if this process has loaded it (nothing is started or reached)."""
        return self._loaded.get(name)

    def gate(self, name: str) -> FairGate | None:
        return self._gates.get(name)

    def load_all(self) -> None:
        for name in self.catalog.entries:
            self.get(name)

    def close(self) -> None:
        """Stops the engines this process started (embedded) and closes connections to the others."""
        with self._load_lock:
            loaded, self._loaded = dict(self._loaded), {}
        for name, backend in loaded.items():
            close = getattr(backend, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing model %s failed", name)
