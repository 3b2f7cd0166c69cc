"""Checks on the request target as the client sent it, before routing.

ASGI servers decode the path before the router sees it, so `/v1/threads/thread_1%2fruns` would be routed as
`/v1/threads/thread_1/runs`. No id holds a slash or a NUL, so a path with `%2F` or `%00` names nothing: 404.
A NUL in a query parameter is refused with a 400 naming it (PostgreSQL cannot store or compare it)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from litestar.types import ASGIApp, Receive, Scope, Send

from assistd.errors import InvalidRequest, NotFound

_ENCODED_SEPARATOR = re.compile(rb"%(2f|00)", re.IGNORECASE)


def check_raw_target(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            _check(scope)
        await app(scope, receive, send)

    return middleware


def _check(scope: Scope) -> None:
    raw_path: bytes = (scope.get("raw_path") or b"").partition(b"?")[0]  # some servers keep the query
    if _ENCODED_SEPARATOR.search(raw_path):
        shown = raw_path.decode("latin-1")
        raise NotFound(f"Invalid URL ({scope.get('method', 'GET')} {shown})")
    query: bytes = scope.get("query_string") or b""
    if b"%00" in query or b"\x00" in query:
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in key or "\x00" in value:
                param = key.replace("\x00", "") or None
                raise InvalidRequest(
                    f"Invalid '{param}': query parameters must not contain NUL characters (%00).",
                    param=param,
                    code="invalid_value",
                )
