"""JSON request bodies: decoded by Litestar (msgspec), except that a body nested too deeply for the decoder
(it stops at Python's recursion limit, ~1000 levels) becomes a `TooDeep` value naming where, which
RequestModel.parse answers with a 400 naming the parameter, instead of a RecursionError and a 500."""

from __future__ import annotations

import json
import re
from typing import Any

from litestar import Request

from assistd.protocol.base import MAX_JSON_DEPTH, TooDeep

# Strings (with their escapes) and the punctuation that shapes the document; everything else is skipped.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)


class JSONRequest(Request):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            return TooDeep(nesting_path(await self.body(), MAX_JSON_DEPTH))


def nesting_path(body: bytes, limit: int) -> tuple[str | int, ...]:
    """The path (keys and indices) to the first object or array that opens more than `limit` levels deep,
    found by a flat scan of the tokens (no recursion)."""
    stack: list[list[Any]] = []  # [kind, current key or index]
    key: bytes | None = None
    for match in _TOKEN.finditer(body):
        token = match.group()
        if token[:1] == b'"':
            key = token
        elif token in (b"{", b"["):
            if len(stack) >= limit:
                break
            stack.append([token, None if token == b"{" else 0])
        elif token in (b"}", b"]"):
            if stack:
                stack.pop()
        elif token == b":" and stack and key is not None:
            stack[-1][1] = _text(key)
        elif token == b"," and stack and stack[-1][0] == b"[":
            stack[-1][1] += 1
    return tuple(step for _, step in stack if step is not None)


def _text(token: bytes) -> str:
    try:
        return json.loads(token)
    except ValueError:
        return token[1:-1].decode(errors="replace")
