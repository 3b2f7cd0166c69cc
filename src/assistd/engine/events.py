"""Typed run events and the buses that carry them from the worker executing a run to SSE streams.

`EventBus` is in-process: one node, where the process that streams a run is the one executing it.
`DatabaseBus` (engine/event_log.py) is for processes sharing the work: events go to the `run_events` table
with a per-run sequence and every node's streams read them from there, in order."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
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

    def sse(self) -> bytes:
        """The event as server-sent event lines (`event:`, then `data:` with its JSON, compact), encoded once
        however many streams send it (a response's kept events are read by every stream and resume)."""
        cached: bytes | None = self.__dict__.get("_sse")
        if cached is None:
            cached = b"event: " + self.name.encode() + b"\ndata: " + dumps(self.payload()) + b"\n\n"
            object.__setattr__(self, "_sse", cached)
        return cached


def dumps(value: Any) -> bytes:
    """Compact JSON (UTF-8, not ASCII-escaped): orjson, or the standard library for what orjson refuses
    (keys that are not strings, integers past 64 bits, nesting past 254), which raises as it always did for
    what is not JSON at all."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":")).encode()


class _Waker:
    """Wakes a loop's waiting inboxes: one `call_soon_threadsafe` for all those that got events while the
    last wake-up was on its way (many streams on one server loop share it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._ready: list[Inbox] = []
        self._pending = False

    def wake(self, inbox: Inbox) -> None:
        with self._lock:
            self._ready.append(inbox)
            if self._pending:
                return
            self._pending = True
        try:
            self.loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed
            with self._lock:
                self._pending = False
                self._ready.clear()
            raise

    def _run(self) -> None:  # on the loop
        with self._lock:
            ready, self._ready = self._ready, []
            self._pending = False
        for inbox in ready:
            inbox._wake()


_wakers: dict[asyncio.AbstractEventLoop, _Waker] = {}
_wakers_lock = threading.Lock()


def _waker(loop: asyncio.AbstractEventLoop) -> _Waker:
    with _wakers_lock:
        waker = _wakers.get(loop)
        if waker is None:
            for old in [old for old in _wakers if old.is_closed()]:  # loops of tests, servers gone
                del _wakers[old]
            waker = _wakers[loop] = _Waker(loop)
        return waker


class Inbox:
    """A subscription's events waiting for its stream: pushed from any thread (workers, the database bus's
    reader), taken on the subscriber's loop, all at once. The loop is woken only for a consumer that waits
    (one that is busy looks again before it waits) and only when no wake-up is already on its way: one
    `call_soon_threadsafe` per burst, shared by the loop's inboxes, not one per event. Also reads like the
    asyncio.Queue it replaces (`put_nowait`, `get_nowait`, `get`, `empty`, `qsize`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waker = _waker(loop)
        self._items: deque[Event] = deque()
        self._lock = threading.Lock()
        self._wake_pending = False  # a wake-up is on its way to the waiting consumer
        self._waiter: asyncio.Future[bool] | None = None  # the consumer waiting for events (on the loop)
        self._timer: asyncio.TimerHandle | None = None  # the one quiet timer (see `take`)
        self._quiet_since = 0.0  # loop time at which the consumer last came for events
        self._quiet_for = 0.0

    def push(self, event: Event) -> None:
        """Queues an event (any thread). RuntimeError when the subscriber's loop is closed."""
        with self._lock:
            self._items.append(event)
            wake = self._waiter is not None and not self._wake_pending
            if wake:
                self._wake_pending = True
        self._wake_up(wake)

    put_nowait = push

    def push_many(self, events: Iterable[Event]) -> None:
        """Queues events in order (any thread), waking the consumer once."""
        with self._lock:
            before = len(self._items)
            self._items.extend(events)
            wake = len(self._items) > before and self._waiter is not None and not self._wake_pending
            if wake:
                self._wake_pending = True
        self._wake_up(wake)

    def _wake_up(self, wake: bool) -> None:
        if not wake:
            if self.loop.is_closed():  # no one will ever take them: the subscriber is gone
                raise RuntimeError("Event loop is closed")
            return
        try:
            self._waker.wake(self)
        except RuntimeError:
            with self._lock:
                self._wake_pending = False
            raise

    def _wake(self) -> None:  # on the loop
        with self._lock:
            self._wake_pending = False
            waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def take_nowait(self) -> list[Event]:
        """Everything queued, in order (maybe nothing)."""
        with self._lock:
            if not self._items:
                return []
            items = list(self._items)
            self._items.clear()
        return items

    async def take(self, quiet_seconds: float | None = None) -> list[Event]:
        """Everything queued, in order, waiting for at least one event; with `quiet_seconds`, [] once that
        long passed from this call with none arriving. One timer serves all calls: armed when the consumer
        first waits, it re-arms itself for the current wait's deadline until one is met."""
        if quiet_seconds is not None:
            self._quiet_since = self.loop.time()
            self._quiet_for = quiet_seconds
        while True:
            with self._lock:
                if self._items:
                    items = list(self._items)
                    self._items.clear()
                    return items
                waiter = self._waiter = self.loop.create_future()
            if quiet_seconds is not None and self._timer is None:
                self._timer = self.loop.call_at(self._quiet_since + quiet_seconds, self._tick)
            try:
                woken = await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
            if not woken:  # quiet that long, unless an event came as the timer fired (both in one pass)
                with self._lock:
                    items = list(self._items)
                    self._items.clear()
                return items

    def _tick(self) -> None:  # the quiet timer, on the loop
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # not waiting now: the next wait arms the timer again
        due = self._quiet_since + self._quiet_for
        if self.loop.time() >= due - _TIMER_SLACK:
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
            waiter.set_result(False)
        else:
            self._timer = self.loop.call_at(due, self._tick)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # asyncio.Queue's reading side, one event at a time
    def get_nowait(self) -> Event:
        with self._lock:
            if not self._items:
                raise asyncio.QueueEmpty
            return self._items.popleft()

    async def get(self) -> Event:
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


_TIMER_SLACK = 0.001  # asyncio runs a timer up to its clock's resolution early


def _kept(event: Event) -> tuple[str, bytes] | Event:
    """A response's event as its log keeps it: its name and encoded bytes, a tuple of two atoms that the
    garbage collector stops walking (at GPU rates a response keeps thousands of events for KEEP_SECONDS: as
    dicts, a full collection over a million of them took 200 ms, and a server's streams stalled on them);
    the event itself when it does not encode (its stream reports that)."""
    try:
        return (event.name, event.sse())
    except Exception:
        return event


def _unkept(kept: tuple[str, bytes] | Event) -> Event:
    """A kept event again, for a stream that resumes: its data read back from its bytes, the bytes sent."""
    if isinstance(kept, Event):
        return kept
    name, sse = kept
    event = Event(name, orjson.loads(sse[len(name) + 14 : -2]))  # b"event: NAME\ndata: JSON\n\n"
    object.__setattr__(event, "_sse", sse)
    return event


class Subscription:
    def __init__(self, bus: EventBus, run_id: str, loop: asyncio.AbstractEventLoop, after: int = 0) -> None:
        self.bus = bus
        self.run_id = run_id
        self.loop = loop
        self.cursor = after  # DatabaseBus: the last sequence number delivered
        self.queue = Inbox(loop)
        # Any thread; RuntimeError when the subscriber's loop is closed. `push_many`: several, one wake-up.
        self.push = self.queue.push
        self.push_many = self.queue.push_many

    def close(self) -> None:
        self.queue.cancel_timer()
        self.bus.unsubscribe(self)


class EventBus:
    """In-process: events reach the subscribers of this process only. A response's events are numbered
    (`sequence_number`, from 0) and kept a while, so that a stream can resume after any of them: until
    KEEP_SECONDS after its stream ended, or after its last event when no end comes (deleted while it ran, its
    executor gone)."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = threading.RLock()
        # a response's events, in order (index = sequence number), kept as their encoded bytes (see `_kept`)
        self._logs: dict[str, list[tuple[str, bytes] | Event]] = {}
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
            sub.push_many(map(_unkept, self._logs.get(run_id, [])[after:]))
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
                log.append(_kept(event))
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
