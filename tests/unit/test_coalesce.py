"""Coalescing deltas (engine/coalesce.py): only consecutive text-only deltas to the same place merge, their
text joined exactly; everything else passes unchanged and in order; the events given are never modified; and
what the official SDK accumulates from the merged deltas equals what it accumulates from the originals."""

from __future__ import annotations

import copy
from typing import Any

from openai.lib.streaming._assistants import accumulate_delta

from assistd.engine.coalesce import merge_deltas, merge_key
from assistd.engine.events import Event


def text(value: str, message: str = "msg_a", index: int = 0, **extra: Any) -> Event:
    part_text: dict[str, Any] = {"value": value, **extra}
    part = {"index": index, "type": "text", "text": part_text}
    return Event(
        "thread.message.delta",
        {"id": message, "object": "thread.message.delta", "delta": {"content": [part]}},
    )


def call(piece: str, kind: str = "function", step: str = "step_a", index: int = 0) -> Event:
    field = "arguments" if kind == "function" else "input"
    details = {"type": "tool_calls", "tool_calls": [{"index": index, "type": kind, kind: {field: piece}}]}
    return Event(
        "thread.run.step.delta",
        {"id": step, "object": "thread.run.step.delta", "delta": {"step_details": details}},
    )


def values(events: list[Event]) -> list[str]:
    return [e.data["delta"]["content"][0]["text"]["value"] for e in events]


def test_consecutive_text_deltas_of_one_part_merge_exactly():
    pieces = ["Hé", "llo", " ", "wörld", "", " 🌍", "\n", '\\"end"']
    events = [text(p) for p in pieces]
    before = copy.deepcopy(events)
    (merged,) = merge_deltas(events)
    assert merged.data == {
        "id": "msg_a",
        "object": "thread.message.delta",
        "delta": {"content": [{"index": 0, "type": "text", "text": {"value": "".join(pieces)}}]},
    }
    assert events == before  # the events given are not modified


def test_a_single_delta_is_passed_as_it_was():
    event = text("x")
    assert merge_deltas([event])[0] is event
    assert merge_deltas([]) == []


def test_other_events_keep_deltas_apart_and_order_is_kept():
    created = Event("thread.message.created", {"id": "msg_b"})
    completed = Event("thread.run.completed", {"id": "run_x"})
    events = [
        text("a"),
        text("b"),
        created,
        text("c"),
        text("d", message="msg_b"),
        text("e", message="msg_b"),
    ]
    events += [completed, text("f"), text("g")]
    out = merge_deltas(events)
    assert [e.name for e in out] == [
        "thread.message.delta",
        "thread.message.created",
        "thread.message.delta",
        "thread.message.delta",
        "thread.run.completed",
        "thread.message.delta",
    ]
    assert out[1] is created and out[4] is completed
    assert [e.data["id"] for e in out if e.name == "thread.message.delta"] == [
        "msg_a",
        "msg_a",
        "msg_b",
        "msg_a",
    ]
    assert values([e for e in out if e.name == "thread.message.delta"]) == ["ab", "c", "de", "fg"]


def test_what_is_not_plain_text_is_left_alone():
    annotated = text("[1]", annotations=[{"index": 0, "type": "file_citation", "text": "[1]"}])
    other_index = text("z", index=1)
    image = Event(
        "thread.message.delta",
        {
            "id": "msg_a",
            "object": "thread.message.delta",
            "delta": {"content": [{"index": 2, "type": "image_file", "image_file": {"file_id": "file_x"}}]},
        },
    )
    role = Event(
        "thread.message.delta",
        {"id": "msg_a", "object": "thread.message.delta", "delta": {"role": "assistant", "content": []}},
    )
    two_parts = Event(
        "thread.message.delta",
        {
            "id": "msg_a",
            "object": "thread.message.delta",
            "delta": {
                "content": [
                    {"index": 0, "type": "text", "text": {"value": "a"}},
                    {"index": 0, "type": "text", "text": {"value": "b"}},
                ]
            },
        },
    )
    extra_key = text("q")
    extra_key = Event(extra_key.name, {**extra_key.data, "extra": 1})
    not_a_dict = Event("thread.message.delta", object())
    for odd in (annotated, image, role, two_parts, extra_key, not_a_dict):
        assert merge_key(odd) is None
        events = [text("a"), odd, text("b")]
        out = merge_deltas(events)
        assert len(out) == 3 and out[1] is odd and out[0] is events[0] and out[2] is events[2]
    out = merge_deltas([text("a"), text("b"), other_index, text("c")])
    assert [e.data["delta"]["content"][0]["index"] for e in out] == [0, 1, 0]
    assert values(out) == ["ab", "z", "c"]


def test_response_events_are_never_merged():
    events = [
        Event(
            "response.output_text.delta",
            {"type": "response.output_text.delta", "delta": d, "sequence_number": i},
        )
        for i, d in enumerate("abc")
    ]
    assert merge_deltas(events) == events


def test_tool_call_fragments_merge_per_call_and_kind():
    first = Event(
        "thread.run.step.delta",
        {
            "id": "step_a",
            "object": "thread.run.step.delta",
            "delta": {
                "step_details": {
                    "type": "tool_calls",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "", "output": None},
                        }
                    ],
                }
            },
        },
    )
    events = [
        first,
        call('{"a"'),
        call(": 1"),
        call("}"),
        call("x", index=1),
        call("print(", "code_interpreter"),
    ]
    events += [call("1)", "code_interpreter"), call("y", step="step_b")]
    out = merge_deltas(events)
    assert out[0] is first
    fragments = [
        (e.data["id"], c["index"], c["type"], next(iter(c[c["type"]].values())))
        for e in out[1:]
        for c in e.data["delta"]["step_details"]["tool_calls"]
    ]
    assert fragments == [
        ("step_a", 0, "function", '{"a": 1}'),
        ("step_a", 1, "function", "x"),
        ("step_a", 0, "code_interpreter", "print(1)"),
        ("step_b", 0, "function", "y"),
    ]


def test_the_sdk_accumulates_the_same_from_merged_deltas():
    """What the official SDK's accumulation (`AssistantEventHandler` snapshots) builds is unchanged."""
    events = [text("Hel"), text("lo"), text(" there", index=1), text("!", index=1), text("", index=1)]
    events += [call('{"q":'), call('"x"}'), call("more", index=1)]

    def accumulate(evs: list[Event]) -> dict[str, Any]:
        snapshot: dict[str, Any] = {}
        for e in evs:
            accumulate_delta(snapshot, copy.deepcopy(e.data["delta"]))
        return snapshot

    merged = merge_deltas(events)
    assert len(merged) == 4
    assert accumulate(merged) == accumulate(events)
