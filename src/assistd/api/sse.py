"""Server-sent events: the run's events as `event:`/`data:` lines, ended by `done` (API_SURFACE.md §4).

The stream only subscribes to the event bus (in-process, or the database's events when processes share
the work: the run may execute on any node); a client that goes away unsubscribes and the run goes on. An
error after the stream started is sent as an `error` event, then `done`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar.response import Stream

from assistd.engine.events import STREAM_END, Event, EventBus
from assistd.engine.responses.events import END as RESPONSE_STREAM_END_SILENT
from assistd.engine.responses.events import STREAM_END as RESPONSE_STREAM_END

log = logging.getLogger("assistd.sse")

KEEPALIVE_SECONDS = 15.0
DONE = b"event: done\ndata: [DONE]\n\n"


class EventStream(Stream):
    """A Stream that is always `text/event-stream`, whatever media type the route declares."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = "text/event-stream"
        return super().to_asgi_response(*args, **kwargs)


def encode(event: Event) -> bytes:
    return f"event: {event.name}\ndata: {json.dumps(event.payload(), separators=(',', ':'))}\n\n".encode()


async def event_stream(
    bus: EventBus, run_id: str, initial: list[Event], start: Callable[[], None], after: int = 0
) -> Stream:
    """Subscribes to the run (its events numbered after `after`: the run may execute on another node),
    queues `initial` events, then calls `start` (in a thread) to set it going."""
    sub = bus.subscribe(run_id, asyncio.get_running_loop(), after)
    for event in initial:
        sub.queue.put_nowait(event)
    try:
        await asyncio.to_thread(start)
    except BaseException:
        sub.close()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield encode(event)
                if event.name in STREAM_END:
                    break
            yield DONE
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stream of run %s broke", run_id)
            error = {
                "message": f"The stream failed: {exc}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()
            yield DONE
        finally:
            sub.close()

    return EventStream(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def response_stream(
    bus: EventBus, response_id: str, start: Callable[[], Any], after: int = 0
) -> Stream:
    """A response's events (the Responses API's stream: `event:` is the data's `type`, every event numbered,
    no `[DONE]`), from sequence number `after` on; `start` (in a thread) is called once subscribed."""
    sub = bus.subscribe(response_id, asyncio.get_running_loop(), after)
    try:
        await asyncio.to_thread(start)
    except BaseException:
        sub.close()
        raise

    async def body() -> AsyncIterator[bytes]:
        seq = after - 1  # the last sequence number sent
        try:
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event.name != RESPONSE_STREAM_END_SILENT:
                    seq = event.data.get("sequence_number", seq) if isinstance(event.data, dict) else seq
                    yield encode(event)
                if event.name in RESPONSE_STREAM_END:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stream of response %s broke", response_id)
            error = {
                "type": "error",
                "code": "server_error",
                "message": f"The stream failed: {exc}",
                "param": None,
                "sequence_number": seq + 1,
            }
            yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()
        finally:
            sub.close()

    return EventStream(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
