"""The engine's HTTP client (llm/http.py): server-sent events split on bytes whatever the chunks, every
failure an EngineError naming the engine, and one cancel watcher per engine that cuts a blocked read."""

from __future__ import annotations

import gc
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import suppress
from http.client import IncompleteRead

import pytest

from assistd.llm.errors import EngineError
from assistd.llm.http import CancelWatcher, EngineHTTP, _unchunked, sse_batches

LABEL = "model 'm' on the test engine"
WAIT = 10.0  # generous: a bound that only a hang passes, never a slow machine

EVENTS = [
    {"content": "Hello", "stop": False},
    {"content": " wörld ✓", "stop": False},
    {"content": "", "stop": True, "tokens_predicted": 2, "timings": {"cache_n": 3}},
]
STREAM = (
    b': keep-alive comment\n\nevent: completion\ndata: {"content":"Hello","stop":false}\n\n'
    b'data:{"content":" w\xc3\xb6rld \xe2\x9c\x93","stop":false}\r\n\r\n'
    b'id: 7\rdata:   {"content":"","stop":true,"tokens_predicted":2,"timings":{"cache_n":3}}  \r\r'
    b"data: [DONE]\n\n"
)


def read(chunks: list[bytes]) -> list:
    return [event for batch in sse_batches(iter(chunks), LABEL) for event in batch]


def events(http: EngineHTTP, path: str, body: dict, cancelled) -> Iterator[dict]:
    """A stream's events one by one, whatever batches they came in."""
    for batch in http.event_batches(path, body, cancelled):
        yield from batch


def test_one_chunk_holds_every_event_with_lf_crlf_and_cr_line_ends():
    assert read([STREAM]) == EVENTS


def test_events_cut_anywhere_read_the_same():
    for cut in range(1, len(STREAM)):
        assert read([STREAM[:cut], STREAM[cut:]]) == EVENTS, cut
    for cut in range(1, len(STREAM) - 3, 5):
        assert read([STREAM[:cut], STREAM[cut : cut + 3], STREAM[cut + 3 :]]) == EVENTS, cut


def test_one_byte_at_a_time():
    assert read([STREAM[i : i + 1] for i in range(len(STREAM))]) == EVENTS


def test_empty_chunks_and_a_last_line_without_its_end():
    assert read([b"", b'data: {"a": 1}\n', b"", b'data: {"b"', b": 2}"]) == [{"a": 1}, {"b": 2}]


def test_an_error_line_raises_with_its_text():
    with pytest.raises(EngineError, match=r"test engine failed: the slot is gone$"):
        read([b'data: {"content":"x"}\n\n', b"error: the slot is gone\r\n\r\n"])


def test_an_error_object_raises_with_its_message_but_not_beside_choices():
    with pytest.raises(EngineError, match="failed: context too long"):
        read([b'data: {"error": {"message": "context too long", "code": 400}}\n\n'])
    with pytest.raises(EngineError, match="failed: plain"):
        read([b'data: {"error": "plain"}\n\n'])
    both = {"error": None, "choices": [{"text": "x"}]}
    assert read([b'data: {"error": null, "choices": [{"text": "x"}]}\n\n']) == [both]


def test_an_event_that_is_not_json_raises():
    with pytest.raises(EngineError, match=r"sent an event that is not JSON: '\{\"content\": tru'"):
        read([b'data: {"content": tru\n\n'])


def test_what_python_json_reads_is_read_as_before():
    # bytes that are not UTF-8 become replacement characters; NaN, and integers past 64 bits
    assert read([b'data: {"content": "a\xffb"}\n\n']) == [{"content": "a\ufffdb"}]
    out = read([b'data: {"logprob": -Infinity, "n": 123456789012345678901234567890}\n\n'])
    assert out[0]["logprob"] == float("-inf") and out[0]["n"] == 123456789012345678901234567890


# ---------------------------------------------------------------------------------------------------------
# Through HTTP: a raw engine on a loopback port


class RawEngine:
    """An HTTP server on a loopback port that answers each connection with `reply(conn)`."""

    def __init__(self, reply: Callable[[socket.socket], None]) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = threading.Semaphore(0)  # released when a client closed its connection
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,  # a GET
            )
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += conn.recv(65536)
            with suppress(OSError):  # the client went away
                self.reply(conn)

    def until_closed(self, conn: socket.socket) -> None:
        """Blocks as an engine generating slowly does, until the client shuts its side."""
        conn.settimeout(60)
        with_data = conn.recv(1)
        while with_data:
            with_data = conn.recv(1)
        self.closed.release()

    def close(self) -> None:
        self.sock.close()


SSE_HEAD = (  # as llama.cpp's server answers a request that says `Connection: close`
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture(params=["http.client", "httpx"])
def engine_http(request):
    """An EngineHTTP to a RawEngine, over each of its two stream readers: the standard library's for a
    plain-HTTP engine without a proxy (the default), httpx for the rest (https, a proxy)."""
    made: list[tuple[RawEngine, EngineHTTP]] = []

    def make(reply: Callable[[socket.socket], None]) -> tuple[RawEngine, EngineHTTP]:
        engine = RawEngine(reply)
        http = EngineHTTP(engine.url, "key", "m", "test engine")
        assert http._plain is not None
        if request.param == "httpx":
            http._plain = None
        made.append((engine, http))
        return made[-1]

    yield make
    for engine, http in made:
        http.close()
        engine.close()


def never() -> bool:
    return False


def test_a_stream_in_small_http_chunks(engine_http):
    def reply(conn: socket.socket) -> None:
        conn.sendall(SSE_HEAD)
        for i in range(0, len(STREAM), 7):
            conn.sendall(chunk(STREAM[i : i + 7]))
        conn.sendall(b"0\r\n\r\n")

    _, http = engine_http(reply)
    assert list(events(http, "/completion", {"prompt": "x"}, never)) == EVENTS


def test_an_http_error_names_the_engine_and_the_path(engine_http):
    def reply(conn: socket.socket) -> None:
        body = b'{"error": {"message": "no such slot", "code": 503}}'
        conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    _, http = engine_http(reply)
    with pytest.raises(
        EngineError, match=r"test engine at .* answered /completion with HTTP 503: no such slot"
    ):
        list(events(http, "/completion", {}, never))


def json_reply(status: str, body: bytes) -> Callable[[socket.socket], None]:
    # `Connection: close`, as the raw engine closes each connection after its reply: without it httpx keeps
    # the connection for the next request, which a reset could meet (a race: 1 in 3 runs here)
    def reply(conn: socket.socket) -> None:
        head = b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            status.encode(),
            len(body),
        )
        conn.sendall(head + body)

    return reply


def test_json_requests_read_the_answer_or_name_the_error(engine_http):
    _, http = engine_http(json_reply("200 OK", b'{"tokens": [1, 2, 3]}'))
    assert http.post_json("/tokenize", {"content": "abc"}) == {"tokens": [1, 2, 3]}
    assert http.get_json("/props") == {"tokens": [1, 2, 3]}
    _, http = engine_http(json_reply("503 Busy", b'{"error": {"message": "loading model"}}'))
    with pytest.raises(EngineError, match=r"test engine at .* answered /props with HTTP 503: loading model"):
        http.get_json("/props")
    _, http = engine_http(json_reply("200 OK", b"<html>not json</html>"))
    with pytest.raises(EngineError, match="answered /tokenize with something that is not JSON"):
        http.post_json("/tokenize", {})


def test_a_reply_broken_off_raises(engine_http):
    def reply(conn: socket.socket) -> None:
        conn.sendall(SSE_HEAD + chunk(b'data: {"content": "a"}\n\n') + b"40\r\ndata: {")

    _, http = engine_http(reply)
    stream = events(http, "/completion", {}, never)
    assert next(stream) == {"content": "a"}
    with pytest.raises(EngineError, match=r"broke off its reply: (RemoteProtocolError|IncompleteRead)"):
        next(stream)


@pytest.mark.parametrize("reader", ["http.client", "httpx"])
def test_an_engine_that_is_not_there(reader):
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    http = EngineHTTP(f"http://127.0.0.1:{port}", None, "m", "test engine")
    if reader == "httpx":
        http._plain = None
    try:
        with pytest.raises(EngineError, match=r"could not be reached: (ConnectError|ConnectionRefusedError)"):
            list(events(http, "/completion", {}, never))
    finally:
        http.close()


class Flag:
    """A cancel check that a test turns on; weakly referable, to see that nothing keeps it."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self) -> bool:
        return self.on


def test_a_cancel_cuts_a_blocked_read_and_the_engine_sees_the_close(engine_http):
    def reply(conn: socket.socket) -> None:
        conn.sendall(SSE_HEAD + chunk(b'data: {"content": "a", "stop": false}\n\n'))
        engine.until_closed(conn)  # then nothing more: a read would block for READ_SECONDS

    engine, http = engine_http(reply)
    flags = [Flag() for _ in range(3)]
    seen: list[list] = [[] for _ in flags]
    ended = [threading.Event() for _ in flags]
    failures: list[BaseException] = []

    def consume(i: int, cancelled: Flag) -> None:
        try:
            for event in events(http, "/completion", {}, cancelled):
                seen[i].append(event)
        except BaseException as exc:
            failures.append(exc)
        ended[i].set()

    threads = [threading.Thread(target=consume, args=(i, flags[i]), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    for i in range(3):
        assert _wait(lambda i=i: bool(seen[i])), "the first event never came"
    assert not any(e.is_set() for e in ended)
    assert sum(t.name == "engine-cancel" for t in threading.enumerate()) >= 1

    flags[1].on = True  # one of three streams cancelled: only that one ends
    assert ended[1].wait(WAIT), "the cancelled stream was not cut"
    assert engine.closed.acquire(timeout=WAIT), "the engine did not see the connection close"
    assert not ended[0].is_set() and not ended[2].is_set()
    flags[0].on = flags[2].on = True
    assert ended[0].wait(WAIT) and ended[2].wait(WAIT)
    for thread in threads:
        thread.join(WAIT)
    assert failures == []  # the iteration ended without an exception
    assert seen == [[{"content": "a", "stop": False}]] * 3

    refs = [weakref.ref(flag) for flag in flags]
    del flags, threads
    gc.collect()
    assert all(ref() is None for ref in refs), "a finished stream is still held"


def test_an_engine_silent_for_too_long_is_an_error_and_one_that_speaks_is_not(engine_http, monkeypatch):
    """A stream's body is read from a blocking socket (a timeout would make each read a poll() and a read,
    at GPU rates two hand-overs of the GIL a token): the watcher ends a stream the engine keeps silent for
    READ_SECONDS, as the timeout did. Bytes without an event (a keep-alive comment) are not silence, nor is
    the time the consumer takes over what it was given. (An EngineHTTP over httpx takes READ_SECONDS as its
    read timeout when it is made.)"""
    monkeypatch.setattr("assistd.llm.http.CANCEL_POLL_SECONDS", 0.02)
    final = chunk(b'data: {"content": "", "stop": true}\n\n') + b"0\r\n\r\n"

    monkeypatch.setattr("assistd.llm.http.READ_SECONDS", 1.0)

    def talking(conn: socket.socket) -> None:  # 1.5 s of keep-alive comments, one each 0.05 s
        conn.sendall(SSE_HEAD + chunk(b'data: {"content": "a", "stop": false}\n\n'))
        for _ in range(30):
            conn.sendall(chunk(b": keep-alive\n\n"))
            time.sleep(0.05)
        conn.sendall(chunk(b'data: {"content": "b", "stop": false}\n\n') + final)

    _, http = engine_http(talking)
    timeouts: list[float | None] = []
    got = []
    for event in events(http, "/completion", {}, never):
        got.append(event["content"])
        timeouts += [s.sock.gettimeout() for s in http._watcher._streams if s.sock is not None]
    assert got == ["a", "b", ""]
    if http._plain is not None:
        assert timeouts and set(timeouts) == {None}  # no read of the body polled first

    monkeypatch.setattr("assistd.llm.http.READ_SECONDS", 0.3)

    def at_once(conn: socket.socket) -> None:
        conn.sendall(SSE_HEAD + b"".join(chunk(b'data: {"content": "%d"}\n\n' % i) for i in range(3)) + final)

    _, http = engine_http(at_once)
    got = []
    for event in events(http, "/completion", {}, never):  # a consumer slower than the silence allowed
        got.append(event["content"])
        time.sleep(0.4)
    assert got == ["0", "1", "2", ""]

    monkeypatch.setattr("assistd.llm.http.READ_SECONDS", 0.5)

    def silent(conn: socket.socket) -> None:
        conn.sendall(SSE_HEAD + chunk(b'data: {"content": "a", "stop": false}\n\n'))
        engine.until_closed(conn)  # then nothing, until the client goes

    engine, http = engine_http(silent)
    stream = events(http, "/completion", {}, never)
    assert next(stream) == {"content": "a", "stop": False}
    began = time.monotonic()
    with pytest.raises(EngineError, match=r"test engine at .* (sent nothing for 0.5 seconds|ReadTimeout)"):
        next(stream)
    assert time.monotonic() - began >= 0.5
    assert engine.closed.acquire(timeout=WAIT), "the engine did not see the connection close"


def _wait(condition: Callable[[], bool]) -> bool:
    event = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return True
        event.wait(0.01)
    return condition()


def test_one_thread_watches_every_stream_and_ends_when_idle(monkeypatch):
    monkeypatch.setattr("assistd.llm.http.WATCHER_IDLE_SECONDS", 0.2)
    watcher = CancelWatcher()
    before = {t for t in threading.enumerate() if t.name == "engine-cancel"}
    pairs = [socket.socketpair() for _ in range(4)]
    flags = [Flag() for _ in pairs]
    try:
        with (
            watcher.watch(pairs[0][0], flags[0]) as s0,
            watcher.watch(pairs[1][0], flags[1]) as s1,
            watcher.watch(pairs[2][0], flags[2]) as s2,
            watcher.watch(None, flags[3]) as s3,
        ):
            ours = {t for t in threading.enumerate() if t.name == "engine-cancel"} - before
            assert len(ours) == 1  # one thread for four streams
            for flag in flags[1:]:
                flag.on = True
            pairs[1][0].settimeout(WAIT)
            assert pairs[1][0].recv(1) == b""  # a blocked read ends: its socket was shut
            assert _wait(lambda: s1.cut and s2.cut and s3.cut)  # a stream without a socket is marked cut
            assert not s0.cut
        (thread,) = ours
        assert _wait(lambda: not thread.is_alive())  # idle: the thread ended
        with watcher.watch(pairs[3][0], flags[0]) as again:  # the next stream starts one
            flags[0].on = True
            assert _wait(lambda: again.cut)
    finally:
        watcher.close()
        for a, b in pairs:
            a.close()
            b.close()


def test_a_cancel_check_that_raises_does_not_stop_the_watcher(caplog):
    watcher = CancelWatcher()
    flag = Flag()

    def broken() -> bool:
        raise RuntimeError("broken check")

    try:
        with watcher.watch(None, broken), watcher.watch(None, flag) as other:
            assert _wait(lambda: "broken check" in caplog.text)
            flag.on = True
            assert _wait(lambda: other.cut)
        assert caplog.text.count("cancel check failed") == 1  # logged once, not at every poll
    finally:
        watcher.close()


def test_a_long_line_over_many_chunks():
    text = "x" * 300_000
    line = b'data: {"content": "%s"}\r\n\r\n' % text.encode()
    chunks = [line[i : i + 1000] for i in range(0, len(line), 1000)]
    assert read([b'data: {"a": 1}\n\n', *chunks, b'data: {"b": 2}\n\n']) == [
        {"a": 1},
        {"content": text},
        {"b": 2},
    ]


def test_a_proxied_or_https_engine_is_read_by_httpx(monkeypatch):
    from assistd.llm.http import _plain_target

    assert _plain_target("http://gpu-box:8080/v1/") == ("gpu-box", 8080, "/v1")
    assert _plain_target("https://gpu-box") is None
    monkeypatch.setenv("http_proxy", "http://proxy:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    assert _plain_target("http://gpu-box:8080") is None  # httpx would go through the proxy
    assert _plain_target("http://localhost:8080") == ("localhost", 8080, "")


# ---------------------------------------------------------------------------------------------------------
# Batches: the tokens that came in one read are handed on together; a stream interval paces the reads


def test_a_chunked_body_unchunked_whatever_the_cuts():
    body = chunk(b"data: a\n\n") + b"5;ext=1\r\nhello\r\n" + chunk(b"x" * 300) + b"0\r\nTrailer: t\r\n\r\n"
    whole = b"data: a\n\nhello" + b"x" * 300
    for size in (1, 2, 5, 13, len(body)):
        blocks = [body[i : i + size] for i in range(0, len(body), size)]
        assert b"".join(_unchunked(iter(blocks))) == whole
    with pytest.raises(IncompleteRead):  # ended before its last chunk
        list(_unchunked(iter([chunk(b"abc"), b"10\r\nshort"])))
    with pytest.raises(ValueError):  # not a chunked body
        list(_unchunked(iter([b"zz\r\nabc\r\n"])))


def test_blocks_that_are_each_one_whole_chunk_unchunk_alike():
    # a token a read: each block one whole chunk (the fast path), whatever its data holds
    datas = [b"data: a\n\n", b"\r\n0\r\n\r\n", b"x" * 0x1F, b"\r\n", b"y" * 4096, b"3\r\nabc\r\n"]
    chunks = [chunk(d) for d in datas]
    assert list(_unchunked(iter([*chunks, b"0\r\n\r\n"]))) == datas
    upper = b"1F\r\n" + b"z" * 31 + b"\r\n"  # hex in capitals; a chunk extension: the long way, same result
    extended = b"3;name=v\r\nabc\r\n"
    assert list(_unchunked(iter([upper, extended, b"0\r\n\r\n"]))) == [b"z" * 31, b"abc"]
    # one chunk and the start of the next in one block, the rest in the next: never taken as one chunk
    assert b"".join(_unchunked(iter([chunks[0] + b"3\r\nab", b"c\r\n0\r\n\r\n"]))) == datas[0] + b"abc"
    with pytest.raises(IncompleteRead):  # a whole chunk, and then the body ends without its last chunk
        list(_unchunked(iter(chunks[:2])))


def test_events_of_one_chunk_come_as_one_batch():
    batches = list(sse_batches(iter([STREAM[:60], STREAM[60:], b""]), LABEL))
    assert [e for batch in batches for e in batch] == EVENTS
    assert list(sse_batches(iter([STREAM]), LABEL)) == [EVENTS]


def lockstep_reply(
    sent: list[float],
    go: list[threading.Event],
    tokens: int,
    first: bytes = b"",
    done: threading.Event | None = None,
):
    """An engine that sends a token when the test says `go`, then its final event (then sets `done`): every
    token a read of its own unless reads are paced. `first`: an event before the first token."""

    def reply(conn: socket.socket) -> None:
        conn.sendall(SSE_HEAD + (chunk(first) if first else b""))
        for i in range(tokens):
            if (i or first) and not go[i].wait(WAIT):
                return
            sent.append(time.monotonic())
            conn.sendall(chunk(b'data: {"content": "t%d", "stop": false}\n\n' % i))
        conn.sendall(chunk(b'data: {"content": "", "stop": true}\n\n') + b"0\r\n\r\n")
        if done is not None:
            done.set()

    return reply


def test_without_an_interval_each_read_is_its_own_batch(engine_http):
    sent: list[float] = []
    go = [threading.Event() for _ in range(4)]
    _, client = engine_http(lockstep_reply(sent, go, 4))
    batches = []
    for batch in client.event_batches("/completion", {}, never):
        batches.append([e["content"] for e in batch])
        if len(batches) < 4:
            go[len(batches)].set()  # the next token only once this one was read
    assert batches[:3] == [["t0"], ["t1"], ["t2"]]
    assert [c for batch in batches[3:] for c in batch] == ["t3", ""]  # the end may come with the last


def paced_client(engine: RawEngine, interval: float) -> EngineHTTP:
    client = EngineHTTP(engine.url, None, "m", "test engine", stream_interval=interval)
    assert client._plain is not None  # paced over http.client (a proxy in the environment would use httpx)
    return client


def test_a_stream_interval_gathers_the_tokens_that_come_meanwhile():
    sent: list[float] = []
    go = [threading.Event() for _ in range(6)]
    done = threading.Event()
    engine = RawEngine(lockstep_reply(sent, go, 6, done=done))
    interval = 1.0
    client = paced_client(engine, interval)
    try:
        batches, read_at = [], []
        for batch in client.event_batches("/completion", {}, never):
            read_at.append(time.monotonic())
            batches.append([e["content"] for e in batch])
            if len(batches) == 1:
                for event in go[1:]:  # the five next tokens are sent at once, one write each
                    event.set()
                assert done.wait(WAIT)
        # the first token is never held; the five that came meanwhile (and the end) are one batch, read no
        # sooner than the interval after the first read (which came after the first token was sent)
        assert batches == [["t0"], ["t1", "t2", "t3", "t4", "t5", ""]]
        assert read_at[1] - sent[0] >= interval
    finally:
        client.close()
        engine.close()


def test_events_without_text_do_not_start_the_interval():
    """An event without text first (a role, an empty piece): the first token after it is not held."""
    sent: list[float] = []
    go = [threading.Event()]
    engine = RawEngine(lockstep_reply(sent, go, 1, first=b'data: {"content": "", "stop": false}\n\n'))
    interval = 30.0  # were the first token held, the test would take this long
    client = paced_client(engine, interval)
    try:
        began = time.monotonic()
        seen = []
        for batch in client.event_batches("/completion", {}, never):
            seen.extend(e["content"] for e in batch)
            if "t0" in seen:
                break  # (the final event, after text, would be paced)
            go[0].set()
        assert seen[:2] == ["", "t0"]
        assert time.monotonic() - began < interval / 2
    finally:
        client.close()
        engine.close()


def test_a_cancel_ends_a_paced_wait_at_once():
    sent: list[float] = []
    go = [threading.Event() for _ in range(2)]
    engine = RawEngine(lockstep_reply(sent, go, 2))
    interval = 30.0
    client = paced_client(engine, interval)
    flag = Flag()
    try:
        began = time.monotonic()
        seen = []
        for batch in client.event_batches("/completion", {}, flag):
            seen.extend(e["content"] for e in batch)
            flag.on = True  # the reader now waits for the interval: the cut ends it
        assert seen == ["t0"]
        assert time.monotonic() - began < interval / 2
    finally:
        go[1].set()
        client.close()
        engine.close()


def test_the_events_before_an_error_line_of_the_same_chunk_come_first():
    batches = sse_batches(iter([b'data: {"content": "a"}\n\nerror: the engine broke\n\n']), LABEL)
    assert next(batches) == [{"content": "a"}]
    with pytest.raises(EngineError, match="the engine broke"):
        next(batches)
