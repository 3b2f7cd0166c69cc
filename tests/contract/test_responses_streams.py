"""Responses API streams that must end, with the official SDK against the real server: a blocking create or an
open stream whose response is deleted while it runs, a finished stream resumed after its last event (an empty
stream that ends at once, as hosted), and a running stream resumed in the middle (the rest, in order)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from assistd.api.sse import KEEPALIVE_SECONDS
from tests.contract.responses_support import MODEL, check_event, check_stream, sse, wait_done
from tests.support import KEY_A

pytestmark = [pytest.mark.contract, pytest.mark.model]

LONG = "Write a long story about a dragon who lives in a castle by the sea."
ENDS = KEEPALIVE_SECONDS + 15  # a stream whose end event never comes ends at its next keep-alive


def in_progress(server, marker: str, timeout: float = 60) -> str:
    """The id of the response whose metadata carries `marker`, once it is in progress (a blocking create's
    id is only answered at its end: read from the server's database)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(server.data_dir / "assistd.db") as db:
            row = db.execute(
                "SELECT id, status FROM responses WHERE metadata LIKE ?", (f"%{marker}%",)
            ).fetchone()
        if row is not None and row[1] == "in_progress":
            return row[0]
        assert row is None or row[1] == "queued", f"the response ended before it could be deleted: {row}"
        time.sleep(0.02)
    raise AssertionError("the response did not start")


def other_client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)


# ------------------------------------------------------------------------------------ deleted mid-run
def test_a_blocking_create_whose_response_is_deleted_mid_run_answers_404(client, server):
    marker = uuid.uuid4().hex
    outcome: dict[str, Any] = {}

    def create() -> None:
        try:
            outcome["response"] = client.responses.create(
                model=MODEL, input=LONG, max_output_tokens=400, metadata={"probe": marker}
            )
        except Exception as exc:
            outcome["error"] = exc

    waiting = threading.Thread(target=create, daemon=True)
    waiting.start()
    response_id = in_progress(server, marker)
    other_client(server).responses.delete(response_id)
    deleted_at = time.monotonic()
    waiting.join(ENDS)
    assert not waiting.is_alive(), "the blocking create still waits for a deleted response"
    assert time.monotonic() - deleted_at < ENDS
    error = outcome.get("error")
    assert isinstance(error, openai.NotFoundError), outcome
    assert error.status_code == 404 and response_id in error.message
    assert error.body["param"] == "response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)


def test_an_open_stream_of_a_response_deleted_mid_run_ends(client, server):
    started = client.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=400)
    seen: list[Any] = []
    deleted = threading.Event()

    def read() -> None:
        for event in client.responses.retrieve(started.id, stream=True):
            seen.append(event)
            if event.type == "response.output_text.delta" and not deleted.is_set():
                other_client(server).responses.delete(started.id)
                deleted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60 + ENDS)
    assert not reader.is_alive(), "the stream of a deleted response is still open"
    assert deleted.is_set(), [e.type for e in seen]
    kinds = [e.type for e in seen]
    # it ends cancelled (no event, as hosted) or, when no end came, with an error event saying it is gone
    assert not {"response.completed", "response.incomplete", "response.failed"} & set(kinds), kinds
    if kinds[-1] == "error":
        assert seen[-1].code == "not_found" and seen[-1].sequence_number == seen[-2].sequence_number + 1
    assert [e.sequence_number for e in seen] == list(range(len(seen)))


def test_responses_whose_rows_vanish_end_within_a_keepalive(client, server):
    """A row can go without the delete route (no end event then): the blocking create answers 404 and an
    open stream ends with an error event, both at the next keep-alive's look at the response."""
    marker, streamed = uuid.uuid4().hex, uuid.uuid4().hex
    outcome: dict[str, Any] = {}
    seen: list[Any] = []

    def create() -> None:
        try:
            client.responses.create(
                model=MODEL, input=LONG, max_output_tokens=400, metadata={"probe": marker}
            )
        except Exception as exc:
            outcome["error"] = exc

    def stream() -> None:
        meta = {"probe": streamed}
        for event in client.responses.create(
            model=MODEL, input=LONG, max_output_tokens=400, metadata=meta, stream=True
        ):
            seen.append(event)

    threads = [threading.Thread(target=f, daemon=True) for f in (create, stream)]
    for thread in threads:
        thread.start()
    ids = [in_progress(server, streamed), in_progress(server, marker)]
    with sqlite3.connect(server.data_dir / "assistd.db", timeout=30) as db:
        db.execute("PRAGMA foreign_keys=ON")
        db.executemany("DELETE FROM responses WHERE id = ?", [(i,) for i in ids])
    gone_at = time.monotonic()
    for thread in threads:
        thread.join(ENDS)
        assert not thread.is_alive(), "still waiting for a response whose row is gone"
    assert time.monotonic() - gone_at < ENDS
    assert isinstance(outcome.get("error"), openai.NotFoundError), outcome
    assert ids[1] in outcome["error"].message
    error = seen[-1]
    assert error.type == "error" and error.code == "not_found" and ids[0] in error.message
    assert [e.sequence_number for e in seen] == list(range(len(seen)))


# ------------------------------------------------------------------------------------------- resuming
def test_a_finished_stream_resumed_after_its_last_event_ends_at_once(client, server):
    done = wait_done(client, client.responses.create(model=MODEL, input="Hi!", background=True).id)
    path = f"/v1/responses/{done.id}"
    events = sse(server.base_url, "GET", path, params={"stream": "true"})
    check_stream(events)
    last = events[-1]["sequence_number"]
    for after in (last, last + 100):
        began = time.monotonic()
        assert list(client.responses.retrieve(done.id, stream=True, starting_after=after)) == []
        assert time.monotonic() - began < 5  # not a keep-alive later
        with client.responses.stream(response_id=done.id, starting_after=after) as stream:
            assert [e.type for e in stream] == []
        raw = httpx.get(
            f"{server.base_url}{path}",
            params={"stream": "true", "starting_after": str(after)},
            headers={"Authorization": f"Bearer {KEY_A}"},
            timeout=10,
        )
        assert raw.status_code == 200 and raw.content == b""
        assert raw.headers["content-type"].startswith("text/event-stream")
    # one before the last: the last alone
    assert sse(server.base_url, "GET", path, params={"stream": "true", "starting_after": str(last - 1)}) == [
        events[-1]
    ]


def test_a_cancelled_stream_resumed_after_its_last_event_ends_at_once(client, server):
    started = client.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=400)
    assert client.responses.cancel(started.id).status == "cancelled"
    events = sse(server.base_url, "GET", f"/v1/responses/{started.id}", params={"stream": "true"})
    assert events and events[0]["type"] == "response.created"  # and no end event: cancelled, as hosted
    for event in events:
        check_event(event)
    began = time.monotonic()
    last = events[-1]["sequence_number"]
    assert list(client.responses.retrieve(started.id, stream=True, starting_after=last)) == []
    assert time.monotonic() - began < 5


def test_a_running_stream_resumed_in_the_middle_gets_the_rest(client, server):
    started = client.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=200)
    n = 5
    first: list[Any] = []
    with client.responses.retrieve(started.id, stream=True) as stream:
        for event in stream:
            first.append(event)
            if len(first) == n + 1:
                break
    assert [e.sequence_number for e in first] == list(range(n + 1))
    assert client.responses.retrieve(started.id).status == "in_progress"  # resumed while it runs
    rest = sse(
        server.base_url,
        "GET",
        f"/v1/responses/{started.id}",
        params={"stream": "true", "starting_after": str(n)},
    )
    final = check_stream(rest, first=n + 1)
    assert final["status"] in ("completed", "incomplete") and final["id"] == started.id
    whole = sse(server.base_url, "GET", f"/v1/responses/{started.id}", params={"stream": "true"})
    assert rest == whole[n + 1 :]
    assert [(e.sequence_number, e.type) for e in first] == [
        (e["sequence_number"], e["type"]) for e in whole[: n + 1]
    ]
