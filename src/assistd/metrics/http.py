"""HTTP: every request counted by its route's path template (`/v1/threads/{thread_id}/runs`, never the path
with its ids) and status code, and logged as one JSON line with `--log-json`; `GET /metrics`, Prometheus's
text format of the container's registry.

`/metrics` is served unless `--no-metrics`; it wants an API key (any project's) when keys are configured,
unless `--metrics-public`."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from litestar import Request, Response, get
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from assistd.errors import Unauthenticated
from assistd.metrics.logs import ACCESS_LOG, emit

UNMATCHED = "(unmatched)"  # a path no route serves: one label for all of them


def count_requests(app: ASGIApp) -> ASGIApp:
    """Wraps the application's whole handler (Litestar's `asgi_handler`: routing and its error answers
    included), so that a 404 of an unknown path or an error raised before a handler is counted too."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        sending = _Sending(send)
        try:
            await app(scope, receive, sending)
        finally:
            _record(scope, sending.status, time.perf_counter() - started)

    return middleware


class _Sending:
    """The ASGI `send` the application is given: notes the status of `http.response.start`, then hands every
    message straight to the server's send (its awaitable returned, no coroutine of its own): a stream's body
    chunks cost one attribute test each."""

    __slots__ = ("send", "started", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.status = 500  # what the server answers when the application raises before answering

    def __call__(self, message: Any) -> Awaitable[None]:
        if not self.started and message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
        return self.send(message)


def _record(scope: Scope, status: int, seconds: float) -> None:
    state = scope["app"].state
    container = state.get("container")
    if container is None:  # before the lifespan built it
        return
    metrics = container.extras["metrics"]
    method = scope.get("method", "GET")
    route = scope.get("path_template") or UNMATCHED
    metrics.http_request(method, route, status, seconds)
    if metrics.log_json:
        headers = dict(scope.get("headers") or ())
        emit(
            ACCESS_LOG,
            "http_request",
            method=method,
            route=route,
            path=scope.get("path"),
            status=status,
            duration_ms=round(seconds * 1000, 1),
            project=_project(state, headers.get(b"authorization")),
            request_id=(headers.get(b"x-request-id") or b"").decode("latin-1") or None,
        )


def _project(state: Any, authorization: bytes | None) -> str | None:
    try:
        return state.keyring.project_for(authorization.decode("latin-1") if authorization else None)
    except Unauthenticated:
        return None


@get("/metrics", include_in_schema=False, sync_to_thread=True)
def metrics_endpoint(request: Request) -> Response[bytes]:
    """The container's metrics in Prometheus's text format (the scrape-time gauges query the database: this
    runs in a thread)."""
    container = request.app.state.container
    if not container.settings.metrics_public:
        request.app.state.keyring.project_for(request.headers.get("authorization"))  # 401 without a key
    body = generate_latest(container.extras["metrics"].registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
