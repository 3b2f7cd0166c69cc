"""HTTP to an inference engine (llama.cpp's server, or an OpenAI-compatible one): JSON requests and
server-sent event streams, with every failure turned into an EngineError that names the model and engine,
and a stream that a cancel can cut at once (the engine sees the connection close and frees its slot)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx

from assistd.llm.errors import EngineError

CANCEL_POLL_SECONDS = 0.05
CONNECT_SECONDS = 5.0
# Between two events of a stream: a long prompt is processed before the first token comes, and a busy
# engine queues a request until a slot is free.
READ_SECONDS = 600.0


class EngineHTTP:
    """One engine's base URL and key, with a pooled client shared by every run thread."""

    def __init__(
        self, url: str, api_key: str | None, model: str, engine: str, connections: int = 256
    ) -> None:
        # `connections`: streams open at once, as many as a worker executes jobs (worker.py MAX_THREADS)
        self.url = url.rstrip("/")
        self.label = f"model '{model}' on the {engine} at {self.url}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def close(self) -> None:
        self._client.close()

    def get_json(self, path: str, timeout: float | None = None) -> Any:
        try:
            response = self._client.get(path, timeout=timeout or READ_SECONDS)
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.label} could not be reached: {_reason(exc)}") from exc
        return self._json(response, path)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.label} could not be reached: {_reason(exc)}") from exc
        return self._json(response, path)

    def _json(self, response: httpx.Response, path: str) -> Any:
        if response.status_code >= 400:
            raise EngineError(f"{self.label} answered {path} with {_error_text(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(f"{self.label} answered {path} with something that is not JSON") from exc

    def events(
        self, path: str, body: dict[str, Any], cancelled: Callable[[], bool]
    ) -> Iterator[dict[str, Any]]:
        """The JSON events of a streamed POST, in order, until the engine ends the stream. When
        `cancelled()` turns true the connection is shut and the iteration ends (no exception)."""
        try:
            # A connection of its own: llama.cpp's server closes a connection after a streamed reply while
            # announcing keep-alive, and the next request sent on it would fail (1 in 7 here).
            with self._client.stream("POST", path, json=body, headers={"Connection": "close"}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise EngineError(f"{self.label} answered {path} with {_error_text(response)}")
                with _cut_when(response, cancelled) as cut:
                    try:
                        for line in response.iter_lines():
                            event = _event(line, self.label)
                            if event is not None:
                                yield event
                    except httpx.HTTPError as exc:
                        if cut.is_set():
                            return
                        raise EngineError(f"{self.label} broke off its reply: {_reason(exc)}") from exc
                    if cut.is_set():
                        return
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.label} could not be reached: {_reason(exc)}") from exc


@contextmanager
def _cut_when(response: httpx.Response, cancelled: Callable[[], bool]) -> Iterator[threading.Event]:
    """Watches `cancelled()` beside the reading thread; shuts the socket when it turns true, which ends a
    blocked read at once."""
    done, cut = threading.Event(), threading.Event()
    stream = response.extensions.get("network_stream")
    sock: socket.socket | None = stream.get_extra_info("socket") if stream is not None else None

    def watch() -> None:
        while not done.wait(CANCEL_POLL_SECONDS):
            if cancelled():
                cut.set()
                if sock is not None:
                    with suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    watcher = threading.Thread(target=watch, name="engine-cancel", daemon=True)
    watcher.start()
    try:
        yield cut
    finally:
        done.set()
        watcher.join()


def _event(line: str, label: str) -> dict[str, Any] | None:
    """One server-sent event line: the JSON of `data:`; `error:` lines and error objects raise."""
    if line.startswith("data:"):
        data = line[5:].strip()
        if not data or data == "[DONE]":
            return None
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise EngineError(f"{label} sent an event that is not JSON: {data[:200]!r}") from exc
        if isinstance(event, dict) and "error" in event and not event.get("choices"):
            raise EngineError(f"{label} failed: {_message(event['error'])}")
        return event
    if line.startswith("error:"):
        raise EngineError(f"{label} failed: {line[6:].strip()[:500]}")
    return None


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error)[:500]


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = _message(body.get("error", body)) if isinstance(body, dict) else str(body)[:500]
    except ValueError:
        detail = response.text[:500]
    return f"HTTP {response.status_code}: {detail}"


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
