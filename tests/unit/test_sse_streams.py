"""The SSE layer (api/sse.py) over the in-process bus: a run's stream and a response's, byte for byte (a
run's ends with `done`, a response's has no end marker and never sends the silent end of a cancelled one),
errors after the stream started, and the look at the response on each keep-alive: gone, the stream ends with
an `error` event the SDK reads; ended with no end event coming, it ends."""

from __future__ import annotations

import asyncio
import json

import pytest
from openai.types.responses import ResponseErrorEvent

from assistd.api import sse
from assistd.engine.events import Event, EventBus
from assistd.engine.responses.events import END, event
from assistd.errors import NotFound


@pytest.fixture(autouse=True)
def fast_keepalive(monkeypatch):
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.05)


async def _read(stream) -> bytes:
    async def chunks() -> bytes:
        return b"".join([chunk async for chunk in stream.iterator])

    return await asyncio.wait_for(chunks(), timeout=10)  # a stream that never ends fails the test


def _sse(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _send(bus: EventBus, job_id: str, *names: str) -> None:
    for name in names:
        bus.deliver(job_id, Event(name, event(name, n=len(name)) if name != END else None))


class Status:
    """A response's status as the stream's check reads it; `gone`: NotFound, like the service."""

    def __init__(self, status: str = "in_progress", then=None) -> None:
        self.status, self.then, self.calls = status, then, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.then is not None and self.calls == 1:
            self.then()
        if self.status == "gone":
            raise NotFound("Response with id 'resp_x' not found.", param="response_id")
        if self.status == "outage" and self.calls == 1:
            raise RuntimeError("database unreachable")
        return self.status


# ----------------------------------------------------------------------------------------------- runs
def test_run_stream_bytes_end_with_done():
    async def go() -> bytes:
        bus = EventBus()
        created = Event("thread.run.created", {"id": "run_x", "status": "queued"})

        def start() -> None:
            bus.deliver("run_x", Event("thread.message.delta", {"delta": "hé"}))
            bus.deliver("run_x", Event("thread.run.completed", {"id": "run_x"}))
            bus.deliver("run_x", Event("thread.message.delta", {"delta": "after the end"}))

        return await _read(await sse.event_stream(bus, "run_x", [created], start))

    assert asyncio.run(go()) == (
        b'event: thread.run.created\ndata: {"id":"run_x","status":"queued"}\n\n'
        + b'event: thread.message.delta\ndata: {"delta":"h\\u00e9"}\n\n'
        + b'event: thread.run.completed\ndata: {"id":"run_x"}\n\n'
        + b"event: done\ndata: [DONE]\n\n"
    )


def test_run_stream_error_then_done_and_keepalives():
    async def go() -> tuple[bytes, bytes]:
        bus = EventBus()
        stream = await sse.event_stream(bus, "run_x", [], lambda: None)
        first = await stream.iterator.__anext__()  # nothing yet: a keep-alive, and the run is not looked at
        bus.deliver("run_x", Event("thread.message.delta", {"bad": object()}))
        return first, b"".join([chunk async for chunk in stream.iterator])

    first, rest = asyncio.run(go())
    assert first == b": keep-alive\n\n"
    error = {
        "message": "The stream failed: Object of type object is not JSON serializable",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert rest == f"event: error\ndata: {json.dumps(error)}\n\n".encode() + b"event: done\ndata: [DONE]\n\n"


# ------------------------------------------------------------------------------------------ responses
def test_response_stream_numbered_no_done_and_silent_end():
    async def go() -> bytes:
        bus = EventBus()
        start = lambda: _send(bus, "resp_x", "response.created", "response.in_progress", END)  # noqa: E731
        return await _read(await sse.response_stream(bus, "resp_x", start, check=Status()))

    assert asyncio.run(go()) == (
        _sse("response.created", {"type": "response.created", "sequence_number": 0, "n": 16})
        + _sse("response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "n": 20})
    )


def test_response_stream_error_is_numbered():
    async def go() -> bytes:
        bus = EventBus()
        _send(bus, "resp_x", "response.created")
        bus.deliver("resp_x", Event("response.output_text.delta", {"sequence_number": None, "x": object()}))
        return await _read(await sse.response_stream(bus, "resp_x", lambda: None))

    body = asyncio.run(go())
    error = {
        "type": "error",
        "code": "server_error",
        "message": "The stream failed: Object of type object is not JSON serializable",
        "param": None,
        "sequence_number": 2,  # after the event that failed (it took number 1)
    }
    assert body.endswith(f"event: error\ndata: {json.dumps(error)}\n\n".encode())


def test_a_deleted_response_ends_its_stream_with_an_error_event():
    async def go() -> bytes:
        bus = EventBus()
        _send(bus, "resp_x", "response.created", "response.in_progress")  # then deleted: no end event
        return await _read(await sse.response_stream(bus, "resp_x", lambda: None, check=Status("gone")))

    body = asyncio.run(go())
    last = body.split(b"\n\n")[-2]
    assert last.startswith(b"event: error\ndata: ") and b"keep-alive" not in body
    error = ResponseErrorEvent.model_validate_json(last.split(b"data: ", 1)[1])
    assert (error.type, error.code, error.sequence_number) == ("error", "not_found", 2)
    assert error.message == "Response with id 'resp_x' not found." and error.param is None


def test_an_ended_response_with_no_end_event_ends_its_stream():
    async def go(check: Status, after: int) -> bytes:
        bus = EventBus()
        _send(bus, "resp_x", "response.created", "response.completed")
        return await _read(await sse.response_stream(bus, "resp_x", lambda: None, after=after, check=check))

    check = Status("completed")
    assert asyncio.run(go(check, after=2)) == b": keep-alive\n\n"  # ended at two looks in a row
    assert check.calls == 2


def test_an_end_event_after_the_status_still_arrives():
    """The status commits a moment before an in-process bus delivers the end event: one look is not enough."""

    async def go() -> bytes:
        bus = EventBus()
        _send(bus, "resp_x", "response.created")
        late = lambda: _send(bus, "resp_x", "response.completed")  # noqa: E731
        return await _read(
            await sse.response_stream(bus, "resp_x", lambda: None, after=1, check=Status("completed", late))
        )

    body = asyncio.run(go())
    assert body == b": keep-alive\n\n" + _sse(
        "response.completed", {"type": "response.completed", "sequence_number": 1, "n": 18}
    )


def test_a_failed_look_is_tried_again():
    async def go() -> bytes:
        bus = EventBus()
        check = Status("outage", then=lambda: _send(bus, "resp_x", "response.created", "response.completed"))
        return await _read(await sse.response_stream(bus, "resp_x", lambda: None, check=check))

    body = asyncio.run(go())
    assert body.startswith(b": keep-alive\n\n") and body.endswith(b'"n":18}\n\n')


def test_watch_raises_not_found_for_a_blocking_create():
    async def go() -> list:
        bus = EventBus()
        sub = bus.subscribe("resp_x", asyncio.get_running_loop())
        _send(bus, "resp_x", "response.created")
        seen = []
        try:
            async for item in sse.watch(sub, Status("gone")):
                seen.append(item and item.name)
        finally:
            sub.close()
        return seen

    with pytest.raises(NotFound):
        asyncio.run(go())


def test_empty_stream():
    assert asyncio.run(_read(sse.empty_stream())) == b""
