"""Coalescing a run's deltas: consecutive deltas that only add text to the same place become one delta with
the joined text, as the hosted API's deltas carry several tokens. Used where several events wait to be sent at
once (a client or the loop fell behind: api/sse.py) and for deltas written to the database in batches.

What merges, and only when consecutive (another event between two deltas keeps them apart):
  - `thread.message.delta` of the same message whose delta is exactly one text part with only a `value`
    (`{"content": [{"index": i, "type": "text", "text": {"value": "..."}}]}`, no annotations, no other key),
    at the same index;
  - `thread.run.step.delta` of the same step whose delta is exactly one tool call carrying only a string
    fragment (`{"index": i, "type": "function", "function": {"arguments": "..."}}` or
    `{"index": i, "type": "code_interpreter", "code_interpreter": {"input": "..."}}`), same call and kind.
The SDK's accumulation concatenates strings and overwrites `index`/`type`, so the merged delta accumulates to
exactly what its parts did. Nothing is dropped or reordered; the events given are never modified (a merged
delta is a new event; one that merges with nothing is passed on as it was). A response's events are never
merged: they are numbered one by one and streams resume by those numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from assistd.engine.events import Event

MESSAGE_DELTA = "thread.message.delta"
STEP_DELTA = "thread.run.step.delta"

# A tool call's kind -> the one string field its fragments carry.
_FRAGMENT_FIELDS = {"function": "arguments", "code_interpreter": "input"}
_DELTA_KEYS = frozenset({"id", "object", "delta"})
_PART_KEYS = frozenset({"index", "type", "text"})

# What identifies where a delta's text goes: (event name, object id, index, kind, field).
Key = tuple[str, str, int, str, str]


def merge_key(event: Event) -> Key | None:
    """Where the event's text goes, when it is a delta that may merge with its neighbours (else None)."""
    data = event.data
    if type(data) is not dict or data.keys() != _DELTA_KEYS or type(data["id"]) is not str:
        return None
    delta = data["delta"]
    if type(delta) is not dict or len(delta) != 1:
        return None
    if event.name == MESSAGE_DELTA:
        if data["object"] != MESSAGE_DELTA:
            return None
        content = delta.get("content")
        if type(content) is not list or len(content) != 1:
            return None
        part = content[0]
        if type(part) is not dict or part.keys() != _PART_KEYS or part["type"] != "text":
            return None
        text, index = part["text"], part["index"]
        if type(index) is not int or type(text) is not dict or len(text) != 1:
            return None
        if type(text.get("value")) is not str:
            return None
        return (MESSAGE_DELTA, data["id"], index, "text", "value")
    if event.name == STEP_DELTA:
        if data["object"] != STEP_DELTA:
            return None
        details = delta.get("step_details")
        if type(details) is not dict or details.keys() != {"type", "tool_calls"}:
            return None
        calls = details["tool_calls"]
        if details["type"] != "tool_calls" or type(calls) is not list or len(calls) != 1:
            return None
        call = calls[0]
        if type(call) is not dict or len(call) != 3:
            return None
        kind, index = call.get("type"), call.get("index")
        field = _FRAGMENT_FIELDS.get(kind) if type(kind) is str else None
        if field is None or type(index) is not int or call.keys() != {"index", "type", kind}:
            return None
        inner = call[kind]
        if type(inner) is not dict or len(inner) != 1 or type(inner.get(field)) is not str:
            return None
        return (STEP_DELTA, data["id"], index, kind, field)
    return None


def merge_deltas(events: Sequence[Event]) -> list[Event]:
    """The events in order, each run of consecutive deltas to the same place (see the module's docstring)
    merged into one delta carrying their joined text; everything else as it was."""
    out: list[Event] = []
    group: list[Event] = []
    group_key: Key | None = None
    for event in events:
        key = merge_key(event)
        if key is not None and key == group_key:
            group.append(event)
            continue
        _flush(out, group, group_key)
        if key is None:
            out.append(event)
            group, group_key = [], None
        else:
            group, group_key = [event], key
    _flush(out, group, group_key)
    return out


def _flush(out: list[Event], group: list[Event], key: Key | None) -> None:
    if not group:
        return
    if len(group) == 1 or key is None:
        out.extend(group)
        return
    out.append(_merged(group, key))


def _merged(group: list[Event], key: Key) -> Event:
    name, object_id, index, kind, field = key
    joined = "".join(_fragment(event, kind, field) for event in group)
    if name == MESSAGE_DELTA:
        part: dict[str, Any] = {"index": index, "type": "text", "text": {"value": joined}}
        delta: dict[str, Any] = {"content": [part]}
    else:
        call = {"index": index, "type": kind, kind: {field: joined}}
        delta = {"step_details": {"type": "tool_calls", "tool_calls": [call]}}
    return Event(name, {"id": object_id, "object": name, "delta": delta})


def _fragment(event: Event, kind: str, field: str) -> str:
    delta = event.data["delta"]
    if kind == "text":
        return delta["content"][0]["text"][field]
    return delta["step_details"]["tool_calls"][0][kind][field]
