"""The SSE layer (api/sse.py) over the in-process bus: a run's stream and a response's, byte for byte (a
run's ends with `done`, a response's has no end marker and never sends the silent end of a cancelled one),
errors after the stream started, and the look at the response on each keep-alive: gone, the stream ends with
an `error` event the SDK reads; ended with no end event coming, it ends."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from openai import OpenAI
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
        + 'event: thread.message.delta\ndata: {"delta":"hé"}\n\n'.encode()  # UTF-8, as JSON allows
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


# ------------------------------------------------------------------------------- batches and merging
def _message_delta(value: str, annotations: list | None = None) -> Event:
    text: dict = {"value": value}
    if annotations:
        text["annotations"] = annotations
    delta = {"content": [{"index": 0, "type": "text", "text": text}]}
    return Event("thread.message.delta", {"id": "msg_x", "object": "thread.message.delta", "delta": delta})


def _events(body: bytes) -> list[tuple[str, object]]:
    out = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"event: "):
            name, data = block.split(b"\n", 1)
            raw = data.removeprefix(b"data: ")
            out.append(
                (
                    name.removeprefix(b"event: ").decode(),
                    raw.decode() if raw == b"[DONE]" else json.loads(raw),
                )
            )
    return out


def test_queued_run_events_go_as_one_chunk_with_text_deltas_merged():
    citation = [{"index": 0, "type": "file_citation", "text": "[1]"}]

    async def go() -> list[bytes]:
        bus = EventBus()

        def start() -> None:  # all queued before the stream reads: one batch
            bus.deliver("run_x", Event("thread.message.created", {"id": "msg_x"}))
            for piece in ["Hé", "llo", " wor", "ld"]:
                bus.deliver("run_x", _message_delta(piece))
            bus.deliver("run_x", _message_delta("[1]", citation))
            bus.deliver("run_x", _message_delta("."))
            bus.deliver("run_x", _message_delta("!"))
            bus.deliver("run_x", Event("thread.run.completed", {"id": "run_x"}))
            bus.deliver("run_x", _message_delta("after the end"))

        stream = await sse.event_stream(bus, "run_x", [], start)
        return await asyncio.wait_for(_chunks(stream), timeout=10)

    chunks = asyncio.run(go())
    assert chunks[1:] == [sse.DONE] and len(chunks) == 2  # everything queued in one chunk, then done
    events = _events(chunks[0])
    assert [name for name, _ in events] == ["thread.message.created"] + ["thread.message.delta"] * 3 + [
        "thread.run.completed"
    ]
    texts = [data["delta"]["content"][0]["text"] for name, data in events if name == "thread.message.delta"]
    assert texts == [{"value": "Héllo world"}, {"value": "[1]", "annotations": citation}, {"value": ".!"}]


def test_queued_response_events_go_as_one_chunk_never_merged():
    async def go() -> list[bytes]:
        bus = EventBus()

        def start() -> None:
            _send(bus, "resp_x", "response.created")
            for piece in "abc":
                bus.deliver(
                    "resp_x",
                    Event("response.output_text.delta", event("response.output_text.delta", delta=piece)),
                )
            _send(bus, "resp_x", "response.completed", "response.output_text.delta")

        stream = await sse.response_stream(bus, "resp_x", start, check=Status())
        return await asyncio.wait_for(_chunks(stream), timeout=10)

    chunks = asyncio.run(go())
    assert len(chunks) == 1
    events = _events(chunks[0])
    assert [data["sequence_number"] for _, data in events] == [0, 1, 2, 3, 4]  # the end: nothing after it
    assert [data["delta"] for name, data in events if name == "response.output_text.delta"] == ["a", "b", "c"]


def test_events_before_one_that_fails_are_sent_then_the_error():
    async def go() -> bytes:
        bus = EventBus()

        def start() -> None:
            bus.deliver("run_x", _message_delta("a"))
            bus.deliver("run_x", Event("thread.message.delta", {"bad": object()}))
            bus.deliver("run_x", Event("thread.run.completed", {"id": "run_x"}))

        return await _read(await sse.event_stream(bus, "run_x", [], start))

    events = _events(asyncio.run(go()))
    assert [name for name, _ in events] == ["thread.message.delta", "error", "done"]


def test_the_quiet_timer_counts_from_each_wait():
    """A keep-alive comes KEEPALIVE_SECONDS after the stream last came for events with none arriving, not
    on a fixed beat: an event late in one wait does not shorten the next."""

    async def go() -> tuple[list, float, list, float]:
        bus = EventBus()
        sub = bus.subscribe("run_x", asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        try:
            loop.call_later(0.2, bus.deliver, "run_x", Event("thread.run.queued", {}))
            began = loop.time()
            first = await sub.queue.take(0.3)
            waited_first = loop.time() - began
            began = loop.time()
            second = await sub.queue.take(0.3)
            return first, waited_first, second, loop.time() - began
        finally:
            sub.close()

    first, waited_first, second, waited_second = asyncio.run(go())
    assert [e.name for e in first] == ["thread.run.queued"] and waited_first >= 0.19
    assert second == [] and waited_second >= 0.29


def test_an_event_that_comes_as_the_quiet_timer_fires_is_sent_not_a_keep_alive():
    """The loop stalled (a loaded box) past both an event's delivery and the quiet deadline: both run in one
    pass, the timer's wake-up first; the wait returns the event, not an empty keep-alive."""

    async def go() -> list:
        bus = EventBus()
        loop = asyncio.get_running_loop()
        sub = bus.subscribe("run_x", loop)
        try:
            loop.call_later(0.2, bus.deliver, "run_x", Event("thread.run.queued", {}))
            loop.call_later(0.15, time.sleep, 0.2)  # the loop held from 0.15 s to 0.35 s
            return await sub.queue.take(0.3)
        finally:
            sub.close()

    assert [e.name for e in asyncio.run(go())] == ["thread.run.queued"]


async def _chunks(stream) -> list[bytes]:
    return [chunk async for chunk in stream.iterator]


def test_the_sdk_stream_helpers_read_merged_deltas_to_the_same_text():
    """The official SDK's `runs.stream` helper over a stream whose queued deltas were merged: the text it
    accumulates (snapshots, `text_deltas`, the final message) is exactly the text of the original deltas."""
    pieces = ["Hé", "llo", ",", " ", "wörld", " 🌍", "\n", "\\", '"', "!"]
    run = {"id": "run_x", "object": "thread.run", "thread_id": "thread_x", "status": "in_progress"}
    step = {"id": "step_x", "object": "thread.run.step", "run_id": "run_x", "type": "message_creation"}
    step["step_details"] = {"type": "message_creation", "message_creation": {"message_id": "msg_x"}}
    message = {
        "id": "msg_x",
        "object": "thread.message",
        "role": "assistant",
        "content": [],
        "run_id": "run_x",
    }
    done_message = {
        **message,
        "content": [{"type": "text", "text": {"value": "".join(pieces), "annotations": []}}],
    }

    async def body() -> bytes:
        bus = EventBus()

        def start() -> None:
            bus.deliver("run_x", Event("thread.run.created", run))
            bus.deliver("run_x", Event("thread.run.step.created", step))
            bus.deliver("run_x", Event("thread.message.created", message))
            for piece in pieces:
                bus.deliver("run_x", _message_delta(piece))
            bus.deliver("run_x", Event("thread.message.completed", done_message))
            bus.deliver("run_x", Event("thread.run.completed", {**run, "status": "completed"}))

        return await _read(await sse.event_stream(bus, "run_x", [], start))

    raw = asyncio.run(body())
    assert sum(1 for name, _ in _events(raw) if name == "thread.message.delta") == 1  # merged
    transport = httpx.MockTransport(
        lambda _request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
    )
    client = OpenAI(api_key="k", base_url="http://test/v1", http_client=httpx.Client(transport=transport))
    with client.beta.threads.runs.stream(thread_id="thread_x", assistant_id="asst_x") as stream:
        deltas = list(stream.text_deltas)
    assert "".join(deltas) == "".join(pieces)
    (final,) = stream.get_final_messages()
    assert final.content[0].text.value == "".join(pieces)
    assert stream.get_final_run().status == "completed"
