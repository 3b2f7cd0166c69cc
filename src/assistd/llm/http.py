"""HTTP to an inference engine (llama.cpp's server, or an OpenAI-compatible one): JSON requests and
server-sent event streams, with every failure turned into an EngineError that names the model and engine,
and a stream that a cancel can cut at once (the engine sees the connection close and frees its slot)."""

from __future__ import annotations

import http.client
import json
import logging
import math
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from assistd.llm.errors import EngineError

log = logging.getLogger("assistd.llm")

CANCEL_POLL_SECONDS = 0.05
# How long the cancel watcher's thread waits for a stream to watch before it ends (the next stream starts it).
WATCHER_IDLE_SECONDS = 30.0
CONNECT_SECONDS = 5.0
# Between two events of a stream: a long prompt is processed before the first token comes, and a busy
# engine queues a request until a slot is free.
READ_SECONDS = 600.0
MAX_SIZE_LINE = 4096
READ_BYTES = 65536  # one read of a stream's body at most


class EngineHTTP:
    """One engine's base URL and key, with a pooled client shared by every run thread."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        model: str,
        engine: str,
        connections: int = 256,
        stream_interval: float = 0.0,
    ) -> None:
        # `connections`: streams open at once, as many as a worker executes jobs (worker.py MAX_THREADS).
        # `stream_interval`: seconds between two reads of a stream after the first (see _PacedReads).
        self.url = url.rstrip("/")
        self.stream_interval = stream_interval
        self.label = f"model '{model}' on the {engine} at {self.url}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self._watcher = CancelWatcher()
        # Streams of a plain-HTTP engine reached without a proxy are read with the standard library's
        # http.client: a token is one small chunk of the body, and httpx/httpcore/h11 spend about twice as
        # much Python per chunk (the relay's largest cost at GPU rates). Anything else goes through httpx.
        self._plain = _plain_target(self.url)
        self._headers = {
            **headers,
            "Content-Type": "application/json",
            "Connection": "close",
            "Accept-Encoding": "identity",
        }

    def close(self) -> None:
        self._client.close()
        self._watcher.close()

    def get_json(self, path: str, timeout: float | None = None) -> Any:
        if self._plain is not None:
            return self._plain_json("GET", path, None, timeout or READ_SECONDS)
        try:
            response = self._client.get(path, timeout=timeout or READ_SECONDS)
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.label} could not be reached: {_reason(exc)}") from exc
        return self._json(response, path)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        if self._plain is not None:  # every run tokenizes its prompt: half httpx's cost per request
            return self._plain_json("POST", path, body, READ_SECONDS)
        try:
            response = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.label} could not be reached: {_reason(exc)}") from exc
        return self._json(response, path)

    def _plain_json(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        """A JSON request over http.client (see __init__), with the same errors as over httpx."""
        with self._plain_request(method, path, body, timeout) as (_, response):
            try:
                content = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise EngineError(f"{self.label} broke off its reply: {_reason(exc)}") from exc
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            try:
                return json.loads(content)
            except ValueError as exc:
                raise EngineError(f"{self.label} answered {path} with something that is not JSON") from exc

    @contextmanager
    def _plain_request(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float
    ) -> Iterator[tuple[socket.socket, http.client.HTTPResponse]]:
        """A request over http.client on a connection of its own, closed after the block: (its socket, the
        response). An answer of 400 or more, or an engine not reached, raises EngineError as over httpx."""
        assert self._plain is not None
        host, port, prefix = self._plain
        conn = http.client.HTTPConnection(host, port, timeout=CONNECT_SECONDS)
        response: http.client.HTTPResponse | None = None
        try:
            try:
                payload = _dumps(body) if body is not None else None
                conn.connect()
                # kept: a response to `Connection: close` takes the socket over (conn.sock is None after it)
                sock = conn.sock
                assert sock is not None
                sock.settimeout(timeout)  # the body's sending, then each read
                conn.request(method, prefix + path, body=payload, headers=self._headers)
                response = conn.getresponse()
                if response.status >= 400:
                    detail = _error_detail(response.read(), response.reason)
                    raise EngineError(f"{self.label} answered {path} with HTTP {response.status}: {detail}")
            except (OSError, http.client.HTTPException) as exc:
                raise EngineError(f"{self.label} could not be reached: {_reason(exc)}") from exc
            yield sock, response
        finally:
            if response is not None:
                response.close()
            conn.close()

    def _json(self, response: httpx.Response, path: str) -> Any:
        if response.status_code >= 400:
            raise EngineError(f"{self.label} answered {path} with {_error_text(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(f"{self.label} answered {path} with something that is not JSON") from exc

    def event_batches(
        self, path: str, body: dict[str, Any], cancelled: Callable[[], bool]
    ) -> Iterator[list[dict[str, Any]]]:
        """The JSON events of a streamed POST, in order, until the engine ends the stream, in the batches
        that came together (over http.client, one read of the stream; over httpx, one HTTP chunk): a reader
        handles a batch's tokens at once, one hand-over where there were as many as tokens. Reads are paced
        by `stream_interval` over http.client only (see _PacedReads). When `cancelled()` turns true the
        connection is shut and the iteration ends (no exception); it is asked every CANCEL_POLL_SECONDS by the
        thread that watches all the engine's streams, so it must be quick."""
        # A connection of its own: llama.cpp's server closes a connection after a streamed reply while
        # announcing keep-alive, and the next request sent on it would fail (1 in 7 here). The body
        # uncompressed: its bytes are split into events as they come.
        if self._plain is not None:
            yield from self._plain_events(path, body, cancelled)
            return
        headers = {"Connection": "close", "Accept-Encoding": "identity"}
        try:
            with self._client.stream("POST", path, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise EngineError(f"{self.label} answered {path} with {_error_text(response)}")
                network = response.extensions.get("network_stream")
                sock = network.get_extra_info("socket") if network is not None else None
                with self._watcher.watch(sock, cancelled) as stream:
                    yield from self._read(_body(response), None, stream, (httpx.HTTPError,))
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.label} could not be reached: {_reason(exc)}") from exc

    def _plain_events(
        self, path: str, body: dict[str, Any], cancelled: Callable[[], bool]
    ) -> Iterator[list[dict[str, Any]]]:
        """`event_batches` over http.client (see __init__), with the same errors and the same cancel. A
        chunked body (as every engine streams) is read and unchunked here, so that a read is known to be the
        stream's own: see _PacedReads."""
        with (
            self._plain_request("POST", path, body, READ_SECONDS) as (sock, response),
            self._watcher.watch(sock, cancelled, silence=READ_SECONDS) as stream,
        ):
            # The body is read from a blocking socket: with a timeout, every read is a poll() and then the
            # read, each letting go of the GIL and taking it again, and at GPU rates a read is a token (16
            # paced streams: about 19 µs of system time a token, measured). The watcher ends a stream the
            # engine keeps silent for READ_SECONDS instead (any bytes that come count: `_noted`).
            sock.settimeout(None)
            paced: _PacedReads | None = None
            reads: Iterable[bytes]
            if response.chunked and self.stream_interval:
                paced = reads = _PacedReads(response.fp, self.stream_interval, stream.ended)
            elif response.chunked:
                reads = iter(partial(response.fp.read1, READ_BYTES), b"")
            else:
                reads = iter(lambda: response.read1(READ_BYTES), b"")
            chunks = _unchunked(_noted(reads, stream)) if response.chunked else _noted(reads, stream)
            yield from self._read(chunks, paced, stream, (OSError, http.client.HTTPException, ValueError))

    def _read(
        self,
        chunks: Iterable[bytes],
        paced: _PacedReads | None,
        stream: _Watched,
        broken: tuple[type[Exception], ...],
    ) -> Iterator[list[dict[str, Any]]]:
        """The event batches of a stream's body; a read that fails (`broken`: the reader's errors) ends it
        quietly when the stream was cut (a cancel), and raises EngineError otherwise; a stream the watcher cut
        for its silence raises EngineError however it ended."""
        try:
            for batch in sse_batches(chunks, self.label):
                stream.heard = math.inf  # the time its consumer takes is not the engine's silence
                yield batch
                stream.heard = time.monotonic()  # reading again from now
                if paced is not None:
                    paced.delivered(any(map(_has_text, batch)))
        except broken as exc:
            if stream.cut:
                self._silent(stream)
                return
            raise EngineError(f"{self.label} broke off its reply: {_reason(exc)}") from exc
        except EngineError:
            if stream.cut:  # a line the cut broke in two
                self._silent(stream)
                return
            raise
        self._silent(stream)  # a stream cut for silence reads as ended: it is an error

    def _silent(self, stream: _Watched) -> None:
        if stream.silent:
            raise EngineError(f"{self.label} sent nothing for {stream.silence:g} seconds")


def _dumps(body: dict[str, Any]) -> bytes:
    """A request's JSON: orjson, or the standard library for what orjson refuses (integers past 64 bits,
    keys that are not strings), as httpx encoded it."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def _plain_target(url: str) -> tuple[str, int, str] | None:
    """(host, port, path prefix) of an `http://` URL that no proxy of the environment applies to (httpx
    would send it through the proxy); None for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        return None
    proxies = urllib.request.getproxies()
    if ("http" in proxies or "all" in proxies) and not urllib.request.proxy_bypass(parts.hostname):
        return None
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


def _body(response: httpx.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive: raw, unless the engine compressed them after all."""
    if response.headers.get("content-encoding", "identity").strip().lower() in ("", "identity"):
        return response.iter_raw()
    return response.iter_bytes()


class _PacedReads:
    """The raw bytes of a response body, one read at a time; once events with text were delivered, each
    read at least `interval` seconds after the one whose events were last delivered (reads until the first
    text are at once: the first token is never held). While a reader handles what it read, the engine's next
    tokens gather in the socket, and one read takes them all: at GPU rates, a read per token (a thread woken,
    a hand-over to the event loop, a send to the client, each per token) is what the relay's CPU goes to.
    SGLang's and vLLM's `--stream-interval` do the same in tokens. 0: every token as it comes. A read that
    filled its buffer is followed at once (more waits). A wait ends when `ended` is set (a cancel)."""

    __slots__ = ("due", "ended", "fp", "full", "interval", "last", "started")

    def __init__(self, fp: Any, interval: float, ended: threading.Event) -> None:
        self.fp = fp  # the response's buffered reader, past the headers
        self.interval = interval
        self.ended = ended
        self.last = 0.0  # when the last read returned
        self.full = False  # the last read filled its buffer
        self.started = False  # text was delivered: reads are paced from now on
        self.due = 0.0  # the next read not before

    def __iter__(self) -> Iterator[bytes]:
        while True:
            if self.due:
                wait = self.due - time.monotonic()
                if wait > 0:
                    self.ended.wait(wait)  # the cut socket ends the read that follows
            data = self.fp.read1(READ_BYTES)  # what the buffer holds, else one read of the socket
            if not data:
                return
            self.last = time.monotonic()
            self.full = len(data) >= READ_BYTES
            yield data

    def delivered(self, text: bool) -> None:
        """Events read were handed over (`text`: one of them had text): once text came, the next read
        waits for the interval (from the read)."""
        self.started = self.started or text
        self.due = self.last + self.interval if self.started and self.interval and not self.full else 0.0


def _noted(reads: Iterable[bytes], stream: _Watched) -> Iterator[bytes]:
    """The reads, each noted as the engine heard from (`_Watched.heard`): a keep-alive comment counts."""
    for data in reads:
        stream.heard = time.monotonic()
        yield data


def _has_text(event: Any) -> bool:
    """Whether an engine's event carries generated text: llama.cpp's `content`, an OpenAI-compatible
    completion's `choices[].text`."""
    if not isinstance(event, dict):
        return False
    if event.get("content"):
        return True
    choices = event.get("choices")
    return isinstance(choices, list) and any(isinstance(c, dict) and c.get("text") for c in choices)


def _unchunked(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The data of an HTTP/1.1 chunked body that comes in `blocks` cut anywhere (chunk extensions and
    trailers ignored); a body that ends before its last chunk raises IncompleteRead."""
    pending = b""  # a size line that a block cut in two
    left = 0  # data bytes of the current chunk still to come
    for block in blocks:
        data = pending + block if pending else block
        pending = b""
        if not left:  # the common case at a token a read: the block is one whole chunk
            eol = data.find(b"\r\n")
            if 0 < eol <= 16 and data.endswith(b"\r\n"):
                try:
                    size = int(data[:eol], 16)
                except ValueError:
                    size = -1
                if size > 0 and eol + size + 4 == len(data):
                    yield data[eol + 2 : eol + 2 + size]
                    continue
        pos, end, out = 0, len(data), []
        while pos < end:
            if left:
                take = min(left, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                left -= take
                continue
            eol = data.find(b"\n", pos)
            if eol < 0:
                pending = data[pos:]
                if len(pending) > MAX_SIZE_LINE:
                    raise http.client.HTTPException("a chunk size line too long")
                break
            line = data[pos:eol].split(b";", 1)[0].strip()
            pos = eol + 1
            if not line:  # the CRLF after a chunk's data
                continue
            left = int(line, 16)  # ValueError: not a chunked body (a broken reply)
            if left < 0:
                raise ValueError(f"a negative chunk size: {line!r}")
            if left == 0:  # the last chunk
                if out:
                    yield b"".join(out)
                return
        if out:
            yield b"".join(out)
    raise http.client.IncompleteRead(b"")


def sse_batches(chunks: Iterable[bytes], label: str) -> Iterator[list[Any]]:
    """The JSON of each `data:` line of a server-sent event stream that comes in `chunks` cut anywhere
    (lines end with LF, CRLF or CR), as the events that each chunk completes (chunks that complete none give
    nothing); `[DONE]` and other fields are skipped, `error:` lines and error objects raise EngineError."""
    held: list[bytes] = []  # a line that earlier chunks began (joined once it ends: a long line stays linear)
    for chunk in chunks:
        if b"\r" in chunk:  # CRLF gives an empty line more, which is skipped as any blank line is
            chunk = chunk.replace(b"\r", b"\n")
        if b"\n" not in chunk:
            held.append(chunk)
            continue
        if held:
            held.append(chunk)
            chunk = b"".join(held)
            held.clear()
        lines = chunk.split(b"\n")
        rest = lines.pop()  # the line the next chunk goes on with (b"" after a line end)
        if rest:
            held.append(rest)
        batch: list[Any] = []
        try:
            for line in lines:
                if line and (event := _event(line, label)) is not None:
                    batch.append(event)
        except EngineError:  # an error line: the events before it are delivered first, as they came
            if batch:
                yield batch
            raise
        if batch:
            yield batch
    if held:
        event = _event(b"".join(held), label)
        if event is not None:
            yield [event]


def _event(line: bytes, label: str) -> Any:
    """One server-sent event line: the JSON of `data:`; `error:` lines and error objects raise."""
    if line.startswith(b"data:"):
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            return None
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = _lenient_json(data, label)
        if isinstance(event, dict) and "error" in event and not event.get("choices"):
            raise EngineError(f"{label} failed: {_message(event['error'])}")
        return event
    if line.startswith(b"error:"):
        raise EngineError(f"{label} failed: {line[6:].decode(errors='replace').strip()[:500]}")
    return None


def _lenient_json(data: bytes, label: str) -> Any:
    """What orjson refuses and Python's json reads: bytes that are not UTF-8 (read with replacement
    characters), NaN and Infinity, integers past 64 bits."""
    text = data.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise EngineError(f"{label} sent an event that is not JSON: {text[:200]!r}") from exc


class _Watched:
    """An open stream under the watcher: its cancel check and its socket; with `silence`, the seconds its
    reader may wait for the engine before the watcher cuts it as `silent`, counted from `heard` (when a read
    last brought bytes, or the reader went back to reading; infinite while its consumer holds a batch)."""

    __slots__ = ("cancelled", "cut", "ended", "failed", "heard", "silence", "silent", "sock")

    def __init__(
        self, cancelled: Callable[[], bool], sock: socket.socket | None, silence: float | None = None
    ) -> None:
        self.cancelled = cancelled
        self.sock = sock
        self.cut = False  # set before the socket is shut: a read that fails after it was cut
        self.ended = threading.Event()  # set as it is cut: a paced reader's wait ends
        self.failed = False  # its check raised (logged once; it is asked again)
        self.silence = silence
        self.heard = time.monotonic()
        self.silent = False  # cut because the engine said nothing for `silence` seconds

    def shut(self) -> None:
        self.cut = True
        self.ended.set()
        if self.sock is not None:
            with suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class CancelWatcher:
    """One thread beside all the reading threads of an engine's streams: every CANCEL_POLL_SECONDS it asks
    each open stream's `cancelled()` and shuts the socket of those that turned true, which ends a blocked
    read at once; so too the streams silent for longer than they may be (`watch`'s `silence`: a blocking
    socket's read timeout, without a timeout on the socket). It starts with the first stream and ends after
    WATCHER_IDLE_SECONDS without one; it holds a stream only while its `watch` is open."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._streams: set[_Watched] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def watch(
        self, sock: socket.socket | None, cancelled: Callable[[], bool], silence: float | None = None
    ) -> Iterator[_Watched]:
        stream = _Watched(cancelled, sock, silence)
        with self._lock:
            self._streams.add(stream)
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="engine-cancel", daemon=True)
                try:
                    thread.start()
                except BaseException:  # (no thread to be had): the stream is not read unwatched
                    self._streams.discard(stream)
                    raise
                self._thread = thread
            self._lock.notify()
        try:
            yield stream
        finally:
            with self._lock:  # the watcher polls under the lock: after this, it never touches the stream
                self._streams.discard(stream)

    def close(self) -> None:
        """Ends the thread once no stream is left open."""
        with self._lock:
            self._closed = True
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._streams or self._closed, WATCHER_IDLE_SECONDS)
                if not self._streams:  # idle for long, or closed with nothing open
                    self._thread = None
                    return
                self._poll()
            time.sleep(CANCEL_POLL_SECONDS)

    def _poll(self) -> None:
        now = time.monotonic()
        for stream in self._streams:
            if stream.cut:
                continue
            try:
                if stream.cancelled():  # first: a stream cancelled as it fell silent ends as cancelled
                    stream.shut()
                    continue
            except Exception:  # a broken check must not end the thread that watches every stream
                if not stream.failed:
                    stream.failed = True
                    log.exception("an engine stream's cancel check failed")
            if stream.silence is not None and now - stream.heard > stream.silence:
                stream.silent = True
                stream.shut()


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error)[:500]


def _error_text(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {_error_detail(response.content, response.reason_phrase)}"


def _error_detail(content: bytes, reason: str) -> str:
    """What an engine's error body says: its JSON error's message, else its text."""
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode(errors="replace")[:500] or reason
    return _message(body.get("error", body)) if isinstance(body, dict) else str(body)[:500]


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
