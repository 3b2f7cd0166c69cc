"""Typed run events and the in-process bus that carries them from worker threads to SSE subscribers."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

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
    def __init__(self, bus: EventBus, run_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.bus = bus
        self.run_id = run_id
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def push(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = threading.Lock()

    def subscribe(self, run_id: str, loop: asyncio.AbstractEventLoop) -> Subscription:
        sub = Subscription(self, run_id, loop)
        with self._lock:
            self._subs.setdefault(run_id, []).append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.run_id, [])
            if sub in subs:
                subs.remove(sub)
            if not subs:
                self._subs.pop(sub.run_id, None)

    def publish(self, run_id: str, name: str, data: Any) -> None:
        event = Event(name, data)
        with self._lock:
            subs = list(self._subs.get(run_id, ()))
        for sub in subs:
            try:
                sub.push(event)
            except RuntimeError:  # the subscriber's loop is closed: it is gone
                self.unsubscribe(sub)
