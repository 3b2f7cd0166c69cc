"""The DatabaseBus writes a job's buffered deltas coalesced: consecutive deltas that only add text to the same
place become one row (a run's by engine/coalesce.py, a response's before it is numbered), so a streaming job
writes about one delta row per flush whatever its token rate. The text joins exactly, nothing is reordered or
merged across another event, a response's events stay numbered from 0 without a gap, and a stream reading
the rows (from the start or resumed after any number) gets every event once, in order."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

import pytest
from sqlmodel import select

from assistd.engine.event_log import DatabaseBus, coalesced, merge_response_deltas
from assistd.engine.events import Event
from assistd.engine.responses.events import event
from assistd.storage.assistants import AssistantRow
from assistd.storage.db import Database
from assistd.storage.responses import ResponseEventRow, ResponseRow
from assistd.storage.run_events import RunEventRow
from assistd.storage.runs import RunRow
from assistd.storage.threads import ThreadRow
from tests.unit.engine_support import PROJECT

# Pieces a tokenizer gives: words, spaces, a newline, multi-byte characters, an emoji split from its modifier
PIECES = [
    "Hel",
    "lo",
    ",",
    " wor",
    "ld",
    "\n",
    "caf",
    "é",
    " ",
    "日本",
    "語",
    " 👍",
    "\U0001f3fd",
    "!",
    " ",
    "\t",
]


@pytest.fixture
def db(each_db):  # SQLite and PostgreSQL (tests/conftest.py)
    return each_db


def _run(db: Database, run_id: str = "run_c") -> str:
    with db.session() as s:
        s.add(AssistantRow(id=f"asst_{run_id}", project=PROJECT, created_at=1, model="m"))
        s.add(ThreadRow(id=f"thread_{run_id}", project=PROJECT, created_at=1))
        s.flush()
        s.add(
            RunRow(
                id=run_id,
                project=PROJECT,
                thread_id=f"thread_{run_id}",
                assistant_id=f"asst_{run_id}",
                created_at=1,
                model="m",
            )
        )
    return run_id


def _response(db: Database, response_id: str = "resp_c") -> str:
    with db.session() as s:
        s.add(ResponseRow(id=response_id, project=PROJECT, created_at=1, model="m", status="in_progress"))
    return response_id


def _text(message_id: str, value: str, index: int = 0, **extra: Any) -> Event:
    text = {"value": value, **extra}
    delta = {"content": [{"index": index, "type": "text", "text": text}]}
    return Event("thread.message.delta", {"id": message_id, "object": "thread.message.delta", "delta": delta})


def _args(step_id: str, piece: str, index: int = 0) -> Event:
    call = {"index": index, "type": "function", "function": {"arguments": piece}}
    delta = {"step_details": {"type": "tool_calls", "tool_calls": [call]}}
    return Event("thread.run.step.delta", {"id": step_id, "object": "thread.run.step.delta", "delta": delta})


def _out(item_id: str, piece: str, logprobs: list | None = None, output_index: int = 0) -> Event:
    name = "response.output_text.delta"
    fields = {"item_id": item_id, "output_index": output_index, "content_index": 0}
    return Event(name, event(name, **fields, delta=piece, logprobs=logprobs or []))


def _stored(db: Database, job_id: str) -> list[tuple[int, str, Any]]:
    table = ResponseEventRow if job_id.startswith("resp_") else RunEventRow
    key = table.response_id if table is ResponseEventRow else table.run_id
    with db.session() as s:
        rows = s.exec(
            select(table.seq, table.name, table.data).where(key == job_id).order_by(table.seq)
        ).all()
    return [tuple(row) for row in rows]


def _message_text(data: Any) -> str:
    return data["delta"]["content"][0]["text"]["value"]


def _publish(bus: DatabaseBus, job_id: str, events: list[Event]) -> None:
    for e in events:
        bus.publish(job_id, e.name, e.data)


def _read_stream(bus: DatabaseBus, job_id: str, after: int = 0) -> list[Event]:
    """What a stream subscribed after `after` is given when the bus reads the job's rows."""
    loop = asyncio.new_event_loop()
    try:
        sub = bus.subscribe(job_id, loop, after)
        got: list[Event] = []
        while True:
            bus._read(job_id)
            loop.run_until_complete(asyncio.sleep(0))  # deliveries queued on the loop, if any
            before = len(got)
            while True:
                try:
                    got.append(sub.queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            if len(got) == before:
                break
        sub.close()
        return got
    finally:
        loop.close()


# ------------------------------------------------------------------------------------------------- runs
def test_a_runs_tokens_become_one_row_per_flush_with_the_text_joined_exactly(db):
    run_id = _run(db)
    bus = DatabaseBus(db)
    tokens = PIECES * 40  # 640 tokens
    flushes = 8
    per_flush = len(tokens) // flushes
    with db.session() as s, bus.ordering(run_id):
        bus.emit(
            s, run_id, [Event("thread.run.created", {"id": run_id}), Event("thread.message.created", {})]
        )
    for f in range(flushes):
        _publish(bus, run_id, [_text("msg_a", t) for t in tokens[f * per_flush : (f + 1) * per_flush]])
        bus.flush_all()
    with db.session() as s, bus.ordering(run_id):
        bus.emit(s, run_id, [Event("thread.message.completed", {}), Event("thread.run.completed", {})])

    rows = _stored(db, run_id)
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))  # numbered without a gap
    names = [name for _, name, _ in rows]
    assert names == ["thread.run.created", "thread.message.created"] + ["thread.message.delta"] * flushes + [
        "thread.message.completed",
        "thread.run.completed",
    ]  # 640 tokens: 8 delta rows, one per flush, in their place
    deltas = [data for _, name, data in rows if name == "thread.message.delta"]
    assert "".join(_message_text(d) for d in deltas) == "".join(tokens)
    assert all(d == {"id": "msg_a", "object": "thread.message.delta", "delta": d["delta"]} for d in deltas)
    assert bus.last_seq(run_id) == len(rows)


def test_a_runs_deltas_are_never_merged_across_another_event_or_place(db):
    run_id = _run(db)
    bus = DatabaseBus(db)
    events = [
        _text("msg_a", "one "),
        _text("msg_a", "two "),
        _args("step_a", '{"x":'),  # another kind of delta between them
        _args("step_a", " 1}"),
        _text("msg_a", "three "),
        _text("msg_a", "【0†a.txt】", annotations=[{"type": "file_citation"}]),  # not only text: kept apart
        _text("msg_a", "four "),
        _text("msg_a", "five ", index=1),  # another part
        _text("msg_b", "six "),  # another message
        _text("msg_b", "seven"),
        Event("thread.run.step.created", {"id": "step_b"}),
        _text("msg_b", "eight"),
    ]
    original = copy.deepcopy([e.data for e in events])
    _publish(bus, run_id, events)
    bus.flush_all()
    assert [e.data for e in events] == original  # the buffered events themselves are not modified

    rows = _stored(db, run_id)
    assert [seq for seq, _, _ in rows] == list(range(1, 10))
    got = [(name, data) for _, name, data in rows]
    assert got == [(e.name, e.data) for e in coalesced(run_id, events)]
    assert [(n, d["id"], _message_text(d) if n == "thread.message.delta" else None) for n, d in got] == [
        ("thread.message.delta", "msg_a", "one two "),
        ("thread.run.step.delta", "step_a", None),
        ("thread.message.delta", "msg_a", "three "),
        ("thread.message.delta", "msg_a", "【0†a.txt】"),
        ("thread.message.delta", "msg_a", "four "),
        ("thread.message.delta", "msg_a", "five "),
        ("thread.message.delta", "msg_b", "six seven"),
        ("thread.run.step.created", "step_b", None),
        ("thread.message.delta", "msg_b", "eight"),
    ]
    assert got[1][1]["delta"]["step_details"]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert got[3][1]["delta"]["content"][0]["text"]["annotations"] == [{"type": "file_citation"}]
    streamed = _read_stream(bus, run_id)
    assert [(e.name, e.data) for e in streamed] == got  # a stream reads them all, once, in order


def test_deltas_waiting_at_a_state_change_are_written_merged_before_it(db):
    run_id = _run(db)
    bus = DatabaseBus(db)
    _publish(bus, run_id, [_text("msg_a", t) for t in PIECES])
    with db.session() as s, bus.ordering(run_id):
        bus.emit(s, run_id, [Event("thread.message.completed", {"id": "msg_a"})])
    rows = _stored(db, run_id)
    assert [(seq, name) for seq, name, _ in rows] == [
        (1, "thread.message.delta"),
        (2, "thread.message.completed"),
    ]
    assert _message_text(rows[0][2]) == "".join(PIECES)


def test_rows_written_are_bounded_by_the_flushes_whatever_the_token_rate(db):
    """The real flush loop while a thread publishes 3,000 tokens as fast as it can: every flush that found
    deltas wrote one delta row, so the rows are the flushes (about 20 a second), not the tokens."""
    run_id = _run(db)
    bus = DatabaseBus(db)
    inserts: list[int] = []
    insert = bus._insert

    def counting(s, job_id, events):
        inserts.append(len(events))
        insert(s, job_id, events)

    bus._insert = counting  # type: ignore[method-assign]
    tokens = [PIECES[i % len(PIECES)] for i in range(3000)]
    bus.start()
    try:
        publisher = threading.Thread(
            target=lambda: _publish(bus, run_id, [_text("msg_a", t) for t in tokens])
        )
        publisher.start()
        publisher.join()
    finally:
        bus.stop()  # flushes what is left
    rows = _stored(db, run_id)
    assert len(rows) == len(inserts)  # one row per flush that had deltas
    assert sum(inserts) == len(tokens)  # ... which took every token published
    assert len(rows) < len(tokens)
    assert "".join(_message_text(data) for _, _, data in rows) == "".join(tokens)
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))


# -------------------------------------------------------------------------------------------- responses
def test_a_responses_deltas_merge_before_they_are_numbered(db):
    response_id = _response(db)
    bus = DatabaseBus(db)

    def named(name: str, **fields: Any) -> Event:
        return Event(name, event(name, **fields))

    lp = [{"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []} for t in PIECES]
    events = [
        named("response.created", response={"id": response_id}),
        named("response.output_item.added", output_index=0, item={"id": "rs_1"}),
        *[
            named("response.reasoning_text.delta", item_id="rs_1", output_index=0, content_index=0, delta=t)
            for t in ("Let", " me", " think")
        ],
        named("response.output_item.done", output_index=0, item={"id": "rs_1"}),
        named("response.output_item.added", output_index=1, item={"id": "msg_1"}),
        *[_out("msg_1", t, [lp[i]], output_index=1) for i, t in enumerate(PIECES[:8])],
        named("response.output_text.annotation.added", item_id="msg_1", output_index=1, annotation_index=0),
        *[_out("msg_1", t, [lp[8 + i]], output_index=1) for i, t in enumerate(PIECES[8:])],
        _out("msg_2", "other item", output_index=2),  # another item: its own event
        named("response.function_call_arguments.delta", item_id="fc_1", output_index=3, delta='{"a":'),
        named("response.function_call_arguments.delta", item_id="fc_1", output_index=3, delta=" 2}"),
        named("response.completed", response={"id": response_id}),
    ]
    original = copy.deepcopy([e.data for e in events])
    _publish(bus, response_id, events[:9])  # two flushes: the second continues the first's text
    bus.flush_all()
    _publish(bus, response_id, events[9:])
    bus.flush_all()
    assert [e.data for e in events] == original

    rows = _stored(db, response_id)
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    assert [data["sequence_number"] for _, _, data in rows] == list(range(len(rows)))  # from 0, no gap
    names = [name for _, name, _ in rows]
    assert names == [
        "response.created",
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.output_item.done",
        "response.output_item.added",
        "response.output_text.delta",  # PIECES[:3], the first flush
        "response.output_text.delta",  # PIECES[3:8], the second
        "response.output_text.annotation.added",
        "response.output_text.delta",  # PIECES[8:]
        "response.output_text.delta",  # msg_2
        "response.function_call_arguments.delta",
        "response.completed",
    ]
    data = [d for _, _, d in rows]
    assert data[2]["delta"] == "Let me think"
    assert data[5]["delta"] + data[6]["delta"] + data[8]["delta"] == "".join(PIECES)
    assert data[5]["logprobs"] + data[6]["logprobs"] + data[8]["logprobs"] == lp  # in order
    assert data[9]["delta"] == "other item" and data[10]["delta"] == '{"a": 2}'
    for d in (data[5], data[8]):  # exactly the fields of the events merged, in their order
        assert list(d) == list(events[8].data)
        assert (d["item_id"], d["output_index"], d["content_index"]) == ("msg_1", 1, 0)
    assert bus.last_seq(response_id) == len(rows) - 1

    everything = [(e.name, e.data) for e in _read_stream(bus, response_id)]
    assert everything == [(name, d) for _, name, d in rows]
    for after in (1, 6, 9):  # resumed after any number: the events after it, numbered as before
        resumed = _read_stream(bus, response_id, after=after)
        assert [e.data for e in resumed] == data[after:]


def test_a_responses_delta_merges_only_with_its_exact_kind():
    name = "response.output_text.delta"
    fields = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    plain = [_out("msg_1", "a"), _out("msg_1", "b")]
    assert [e.data["delta"] for e in merge_response_deltas(plain)] == ["ab"]
    odd = [
        Event(name, {**event(name, **fields, delta="x", logprobs=[]), "obfuscation": "zz"}),  # unknown field
        Event(name, {**event(name, **fields, delta="y", logprobs=[]), "sequence_number": 7}),  # numbered
        Event(name, event(name, **fields, delta=None, logprobs=[])),  # not a string
        Event(name, event(name, **fields, delta="z", logprobs=None)),  # not a list
        Event(name, event(name, **{**fields, "output_index": True}, delta="w", logprobs=[])),
    ]
    for e in odd:
        assert merge_response_deltas([e, e]) == [e, e]  # kept apart, as they were
    assert merge_response_deltas([_out("msg_1", "a"), odd[0], _out("msg_1", "b")])[1] is odd[0]
    assert coalesced("resp_x", [plain[0]]) == [plain[0]]
