"""Server-sent events: a run's or a response's events as `event:`/`data:` lines (API_SURFACE.md §4).

The stream only subscribes to the event bus (in-process, or the database's events when processes share
the work: the job may execute on any node); a client that goes away unsubscribes and the job goes on. A
run's stream ends with `done`; a response's has no end marker (the Responses API's). An error after the
stream started is sent as an `error` event (then `done`, for a run).

A response's stream also looks at the response at each keep-alive (its status, read in a thread): gone
(deleted while it ran), the stream ends with an `error` event; ended, with nothing more arriving, it ends.

The stream takes everything its subscription queued at once and sends it as one chunk (one ASGI send, one
write); when several of a run's events wait, consecutive text deltas to the same place are merged first
(engine/coalesce.py; a response's numbered events never are). Each event is encoded once (`Event.sse`)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from litestar.response import Stream

from assistd.engine.coalesce import merge_deltas
from assistd.engine.events import STREAM_END, Event, EventBus, Subscription
from assistd.engine.responses.events import END as RESPONSE_STREAM_END_SILENT
from assistd.engine.responses.events import STREAM_END as RESPONSE_STREAM_END
from assistd.engine.responses.tape import TERMINAL as RESPONSE_TERMINAL
from assistd.errors import NotFound

log = logging.getLogger("assistd.sse")

KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"
DONE = b"event: done\ndata: [DONE]\n\n"

# The job's status, read in a thread at each keep-alive; raises NotFound when the job is gone.
StatusCheck = Callable[[], str]


class EventStream(Stream):
    """A Stream that is always `text/event-stream`, whatever media type the route declares."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = "text/event-stream"
        return super().to_asgi_response(*args, **kwargs)


@dataclass(frozen=True)
class Flavour:
    """What differs between the two APIs' streams."""

    noun: str  # for the log
    ends: frozenset[str]  # events after which the stream ends
    silent: frozenset[str]  # ... of them, those not sent
    done: bytes  # sent last: after the end event, and after an error event
    merge: bool  # whether deltas waiting together are merged (a response's are numbered one by one)
    error: Callable[[str, str, int], dict[str, Any]]  # an error event's data: (message, code, its number)


RUN = Flavour(
    noun="run",
    ends=STREAM_END,
    silent=frozenset(),
    done=DONE,
    merge=True,
    error=lambda message, code, _seq: {"message": message, "type": code, "param": None, "code": None},
)
RESPONSE = Flavour(
    noun="response",
    ends=RESPONSE_STREAM_END,
    silent=frozenset({RESPONSE_STREAM_END_SILENT}),
    done=b"",
    merge=False,
    error=lambda message, code, seq: {
        "type": "error",
        "code": code,
        "message": message,
        "param": None,
        "sequence_number": seq,
    },
)


def encode(event: Event) -> bytes:
    return event.sse()


def _encode_error(data: dict[str, Any]) -> bytes:
    return f"event: error\ndata: {json.dumps(data)}\n\n".encode()


async def event_stream(
    bus: EventBus, run_id: str, initial: list[Event], start: Callable[[], None], after: int = 0
) -> Stream:
    """Subscribes to the run (its events numbered after `after`: the run may execute on another node),
    queues `initial` events, then calls `start` (in a thread) to set it going."""
    return await _open(bus, run_id, RUN, start, after, initial)


async def response_stream(
    bus: EventBus,
    response_id: str,
    start: Callable[[], Any],
    after: int = 0,
    check: StatusCheck | None = None,
) -> Stream:
    """A response's events (the Responses API's stream: `event:` is the data's `type`, every event numbered,
    no `[DONE]`), from sequence number `after` on; `start` (in a thread) is called once subscribed. `check`:
    the response's status, looked at on each keep-alive (see `watch`)."""
    return await _open(bus, response_id, RESPONSE, start, after, check=check)


def empty_stream() -> Stream:
    """A stream with no event that ends at once (a finished response resumed after its last event)."""
    return _response(_nothing())


async def watch(sub: Subscription, check: StatusCheck | None = None) -> AsyncIterator[Event | None]:
    """The subscription's events one by one, and None for each KEEPALIVE_SECONDS without one; with `check`,
    as `batches`."""
    async with aclosing(batches(sub, check)) as stream:
        async for batch in stream:
            if batch is None:
                yield None
                continue
            for event in batch:
                yield event


async def batches(sub: Subscription, check: StatusCheck | None = None) -> AsyncIterator[list[Event] | None]:
    """The subscription's events, all those queued at once, and None for each KEEPALIVE_SECONDS without one.
    With `check`: raises NotFound when the job is gone, and ends when it had ended at two keep-alives in a row
    with no event between them (its end event would have come: none will; two, as the status commits just
    before an in-process bus delivers the end event)."""
    ended = False
    while True:
        events = await sub.queue.take(KEEPALIVE_SECONDS)
        if not events:  # KEEPALIVE_SECONDS with nothing
            if check is not None:
                try:
                    status = await asyncio.to_thread(check)
                except NotFound:
                    raise
                except Exception as exc:  # a database outage: look again at the next keep-alive
                    log.warning("status of %s not read: %s", sub.run_id, exc)
                    status = None
                if status in RESPONSE_TERMINAL:
                    if ended:
                        return
                    ended = True
            yield None
            continue
        ended = False
        yield events


async def _open(
    bus: EventBus,
    job_id: str,
    flavour: Flavour,
    start: Callable[[], Any],
    after: int = 0,
    initial: Iterable[Event] = (),
    check: StatusCheck | None = None,
) -> Stream:
    """Subscribes to the job (its events from `after` on), queues `initial` events, then calls `start` (in
    a thread) to set it going; the stream sends what the subscription receives."""
    sub = bus.subscribe(job_id, asyncio.get_running_loop(), after)
    for event in initial:
        sub.queue.put_nowait(event)
    try:
        await asyncio.to_thread(start)
    except BaseException:
        sub.close()
        raise
    return _response(_body(sub, flavour, after, check))


async def _body(
    sub: Subscription, flavour: Flavour, after: int, check: StatusCheck | None
) -> AsyncIterator[bytes]:
    seq = after - 1  # the last sequence number sent (a response's)
    try:
        async with aclosing(batches(sub, check)) as stream:
            async for batch in stream:
                if batch is None:
                    yield KEEPALIVE
                    continue
                if flavour.merge and len(batch) > 1:
                    batch = merge_deltas(batch)
                chunks: list[bytes] = []
                ended = False
                failed: Exception | None = None
                for event in batch:
                    if event.name not in flavour.silent:
                        if isinstance(event.data, dict):
                            seq = event.data.get("sequence_number", seq)
                        try:
                            chunks.append(event.sse())
                        except Exception as exc:  # sent after what came before it
                            failed = exc
                            break
                    if event.name in flavour.ends:  # what came after it in the batch is not sent
                        ended = True
                        break
                if chunks:
                    yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if failed is not None:
                    raise failed
                if ended:
                    break
    except asyncio.CancelledError:
        raise
    except NotFound as exc:  # the job is gone
        yield _encode_error(flavour.error(exc.message, "not_found", seq + 1))
    except Exception as exc:
        log.exception("stream of %s %s broke", flavour.noun, sub.run_id)
        yield _encode_error(flavour.error(f"The stream failed: {exc}", "server_error", seq + 1))
    finally:
        sub.close()
    if flavour.done:
        yield flavour.done


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator with nothing to send


def _response(body: AsyncIterator[bytes]) -> Stream:
    return EventStream(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
