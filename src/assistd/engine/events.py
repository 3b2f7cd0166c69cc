"""Typed run events and the buses that carry them from the worker executing a run to SSE streams.

`EventBus` is in-process: one node, where the process that streams a run is the one executing it.
`DatabaseBus` (engine/event_log.py) is for processes sharing the work: events go to the `run_events` table
with a per-run sequence and every node's streams read them from there, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from assistd.engine.responses.events import KEEP_SECONDS, numbered
from assistd.engine.responses.events import STREAM_END as RESPONSE_END
from assistd.storage.db import after_commit

NUMBERED = "resp_"  # jobs whose events carry their sequence number (the Responses API's)

# Events after which a stream segment ends (the SDK then sees `done`).
STREAM_END = frozenset(
    {
        "thread.run.completed",
        "thread.run.incomplete",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
        "thread.run.requires_action",
    }
)


@dataclass(frozen=True)
class Event:
    name: str
    data: Any  # a protocol object (pydantic) or a plain dict (deltas, errors)

    def payload(self) -> Any:
        return self.data.model_dump(mode="json") if hasattr(self.data, "model_dump") else self.data


class Subscription:
    def __init__(self, bus: EventBus, run_id: str, loop: asyncio.AbstractEventLoop, after: int = 0) -> None:
        self.bus = bus
        self.run_id = run_id
        self.loop = loop
        self.cursor = after  # DatabaseBus: the last sequence number delivered
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def push(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    """In-process: events reach the subscribers of this process only. A response's events are numbered
    (`sequence_number`, from 0) and kept a while, so that a stream can resume after any of them: until
    KEEP_SECONDS after its stream ended, or after its last event when no end comes (deleted while it ran, its
    executor gone)."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = threading.RLock()
        self._logs: dict[str, list[Event]] = {}  # a response's events, in order (index = sequence number)
        self._ended: dict[str, float] = {}  # when a response's stream ended (its log is pruned later)
        self._written: dict[str, float] = {}  # when a response's log last grew

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def subscribe(self, run_id: str, loop: asyncio.AbstractEventLoop, after: int = 0) -> Subscription:
        """Events of `run_id` from now on (DatabaseBus: those numbered after `after`); for a response, its
        events from sequence number `after` on, those already delivered first."""
        sub = Subscription(self, run_id, loop, after)
        with self._lock:
            self._subs.setdefault(run_id, []).append(sub)
            for event in self._logs.get(run_id, [])[after:]:
                sub.push(event)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.run_id, [])
            if sub in subs:
                subs.remove(sub)
            if not subs:
                self._subs.pop(sub.run_id, None)

    def subscribers(self, run_id: str) -> list[Subscription]:
        with self._lock:
            return list(self._subs.get(run_id, ()))

    def publish(self, run_id: str, name: str, data: Any) -> None:
        """A delta: delivered at once (DatabaseBus: written within a few tens of milliseconds)."""
        self.deliver(run_id, Event(name, data))

    def emit(self, s: Session, run_id: str, events: list[Event]) -> None:
        """Events of a state change written in `s`: delivered when `s` commits, never if it rolls back."""
        if events:
            after_commit(s, lambda: [self.deliver(run_id, e) for e in events])

    def discard(self, run_id: str) -> None:
        """Drops what is still waiting to be written for the run (its execution here is over)."""

    @contextmanager
    def ordering(self, run_id: str) -> Iterator[None]:
        """Held around a state change of the run so its events and pending deltas keep their order."""
        yield

    def deliver(self, run_id: str, event: Event) -> None:
        if run_id.startswith(NUMBERED):
            with self._lock:  # numbered and pushed in one step: a new subscriber sees each event once
                log = self._logs.setdefault(run_id, [])
                event = Event(event.name, numbered(event.data, len(log)))
                log.append(event)
                self._written[run_id] = time.monotonic()
                if event.name in RESPONSE_END:
                    self._ended[run_id] = self._written[run_id]
                subs = list(self._subs.get(run_id, ()))
                self._push(subs, event)
            return
        self._push(self.subscribers(run_id), event)

    def last_seq(self, job_id: str) -> int | None:
        """The sequence number of a response's last kept event (None: none is kept)."""
        with self._lock:
            log = self._logs.get(job_id)
            return len(log) - 1 if log else None

    def prune(self) -> int:
        """Forgets the events of responses whose stream ended KEEP_SECONDS ago, and of those with no event
        for KEEP_SECONDS whatever their state (no end came: deleted while running, executor gone), unless a
        stream reads them now (it ends when the response is gone: api/sse.py). How many logs it dropped."""
        horizon = time.monotonic() - KEEP_SECONDS
        with self._lock:
            old = [key for key, ended in self._ended.items() if ended < horizon]
            old += [
                key
                for key, written in self._written.items()
                if written < horizon and key not in self._ended and key not in self._subs
            ]
            for key in old:
                self.forget_log(key)
        return len(old)

    def forget_log(self, job_id: str) -> None:
        """Drops a response's kept events at once (it was deleted)."""
        with self._lock:
            self._logs.pop(job_id, None)
            self._ended.pop(job_id, None)
            self._written.pop(job_id, None)

    def _push(self, subs: list[Subscription], event: Event) -> None:
        for sub in subs:
            try:
                sub.push(event)
            except RuntimeError:  # the subscriber's loop is closed: it is gone
                self.unsubscribe(sub)
