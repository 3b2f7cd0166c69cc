"""Loaded models, once per process, each behind a fair (FIFO) lock: one generation at a time per model,
other runs wait their turn in arrival order."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from assistd.llm.backend import LLMBackend
from assistd.llm.catalog import ModelCatalog

BackendFactory = Callable[[str], LLMBackend]


class LockAbandoned(Exception):
    pass


class FairLock:
    """A lock granted in the order it was asked for."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()

    @contextmanager
    def hold(self, abandon: Callable[[], bool] | None = None) -> Iterator[None]:
        """Waits for this caller's turn; gives up its place (LockAbandoned) as soon as `abandon()` is true."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._queue[0] is not ticket:
                self._cond.wait(timeout=0.1)
                if abandon is not None and abandon():
                    self._queue.remove(ticket)
                    self._cond.notify_all()
                    raise LockAbandoned()
        try:
            yield
        finally:
            with self._cond:
                self._queue.popleft()
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        return max(0, len(self._queue) - 1)


class ModelRegistry:
    def __init__(self, catalog: ModelCatalog, factory: BackendFactory) -> None:
        self.catalog = catalog
        self._factory = factory
        self._loaded: dict[str, LLMBackend] = {}
        self._locks: dict[str, FairLock] = {}
        self._load_lock = threading.Lock()

    def get(self, name: str) -> LLMBackend:
        """The loaded backend for `name`, loading it on first use (blocking: call from a worker thread)."""
        self.catalog.require(name)
        with self._load_lock:
            if name not in self._loaded:
                self._loaded[name] = self._factory(name)
                self._locks[name] = FairLock()
            return self._loaded[name]

    @contextmanager
    def use(self, name: str, abandon: Callable[[], bool] | None = None) -> Iterator[LLMBackend]:
        """Exclusive use of a model for one generation, in FIFO order behind the runs already waiting."""
        backend = self.get(name)
        with self._locks[name].hold(abandon):
            yield backend

    def load_all(self) -> None:
        for name in self.catalog.entries:
            self.get(name)
