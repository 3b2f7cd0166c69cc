"""The Responses API's stream events: `{"type": name, "sequence_number": n, ...}`. The number is given by
the event bus as it delivers or stores the response's events (engine/events.py, engine/event_log.py): from 0,
one more per event, in the order the stream sends them, on every node."""

from __future__ import annotations

from typing import Any

# Events after which a response's stream ends. END ends it without being sent (a cancelled response: the
# hosted API's stream has no event for it).
END = "response.end"
KEEP_SECONDS = 900  # a response's events (and a store: false response) are kept this long after it ended
STREAM_END = frozenset({"response.completed", "response.failed", "response.incomplete", END})


def event(name: str, /, **fields: Any) -> dict[str, Any]:
    """An event's data, without its sequence number (the bus numbers it)."""
    return {"type": name, "sequence_number": None, **fields}


def numbered(data: Any, seq: int) -> Any:
    """The event's data with its sequence number."""
    if isinstance(data, dict) and "sequence_number" in data:
        return {**data, "sequence_number": seq}
    return data
