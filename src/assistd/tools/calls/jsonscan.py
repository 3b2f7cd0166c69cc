"""Lenient reading of the JSON a model wrote: tolerates fences, trailing commas, truncation, junk after."""

from __future__ import annotations

import json
import re
from typing import Any

from assistd.tools.calls.types import ParsedCall

_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw newlines inside strings are accepted
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def loads(text: str) -> Any:
    """The JSON value in `text`, or None. Repairs: code fences, trailing commas, unclosed brackets."""
    text = text.strip()
    if m := _FENCE.match(text):
        text = m.group(1).strip()
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            value, end = _DECODER.raw_decode(candidate)
        except ValueError:
            continue
        if not candidate[end:].strip():
            return value
    closed = _close_brackets(_TRAILING_COMMA.sub(r"\1", text))
    if closed is not None:
        try:
            return _DECODER.decode(closed)
        except ValueError:
            return None
    return None


def decode_at(text: str, index: int) -> tuple[Any, int] | None:
    """The JSON value starting at text[index] and the index just past it, or None."""
    try:
        return _DECODER.raw_decode(text, index)
    except ValueError:
        return None


def _close_brackets(text: str) -> str | None:
    """Closes the strings and brackets a truncated reply left open; None when the text is not that."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and (not stack or stack.pop() != ch):
            return None
    if not stack and not in_string:
        return None
    tail = text + ('"' if in_string else "")
    tail = tail.rstrip().rstrip(",").rstrip(":")
    return tail + "".join(reversed(stack))


def call_of(value: Any) -> ParsedCall | None:
    """A ParsedCall from {"name": str, "arguments"|"parameters": object or JSON string}, else None."""
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    if not isinstance(name, str) or not name:
        fn = value.get("function")
        if isinstance(fn, dict):  # {"type": "function", "function": {"name", "arguments"}}
            return call_of(fn)
        return None
    args: Any = {}
    for key in ("arguments", "parameters", "args"):
        if key in value:
            args = value[key]
            break
    if isinstance(args, str):
        args = loads(args) if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return ParsedCall(name=name, arguments=json.dumps(args, ensure_ascii=False))


def calls_of(value: Any) -> list[ParsedCall] | None:
    """The calls in a call object or a list of them; None unless every item is a call."""
    items = value if isinstance(value, list) else [value]
    calls = [call_of(v) for v in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]
