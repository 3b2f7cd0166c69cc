"""Benchmark: assistd's own cost per relayed token and per run, behind an engine that streams at GPU rates.

A fake llama.cpp server engine (this script's `engine` subcommand: raw asyncio, a process of its own, so its
CPU is measured apart) streams every reply at a set per-stream rate (`--rate` tok/s, as a GPU's decode steps
do: one token for every open stream per step; 0: as fast as the sockets take them). It answers what assistd
needs of a llama.cpp server at `url`: GET /health, /props, /slots, /v1/models; POST /tokenize, /detokenize
(one token per character, ChatML's markers one token each), /completion (streamed SSE `data: {...}` chunks,
the final one with `stop: true`, `tokens_evaluated`, `tokens_predicted`, `stop_type`, `timings.cache_n`).
A reply's length is `REPLY=<n>` in its prompt (capped by `n_predict`: stop_type "limit"), else --tokens.

The same asyncio client (raw HTTP/1.1, one connection per stream, no JSON decoding but the final event's)
streams:
  - direct: the engine's /completion (the body assistd's backend sends);
  - runs: an `assistd serve` process whose only model is the engine (models file `url`, `chat_template`,
    `parallel` = the largest level), POST /v1/threads/{id}/runs stream=true on pre-created threads;
  - responses: the same server, POST /v1/responses stream=true.
At each concurrency every round starts that many streams at once on each side. Aggregate tok/s = completion
tokens / wall time of the round (first request to last byte); TTFT = request to the first text delta; assistd
CPU = utime+stime of its process (/proc) over the round, per 1,000 relayed tokens, and per run from two reply
lengths (cpu = a*runs + b*tokens); RSS per open stream = (peak RSS during the round - RSS before) / streams.
With --profile, py-spy samples assistd during extra rounds (1 and 16 streams, unlimited rate) and the top
functions (self and inclusive) are printed.

With --cluster the server is the cluster path instead: a throwaway PostgreSQL 15 (tests/postgres.py) and two
assistd processes on it, an `--role api` node the client talks to and an `--role worker` node that executes
the runs, both `--events database` (every delta reaches the client through `run_events` /
`response_events`), one files dir. assistd CPU is both nodes' CPU; PostgreSQL's own CPU is a column of its
own. The write amplification of each round comes from `pg_stat_user_tables` (n_tup_ins, n_tup_upd) read
before and after it: event rows inserted, and rows inserted or updated in all tables, per 1,000 relayed
tokens, and rows per second of the round.

Usage: .venv/bin/python scripts/bench_relay.py [--levels 1,16,64,256] [--rate 100] [--tokens 200]
       [--rounds 2] [--apis runs,responses] [--profile] [--server-args '--events database'] [--cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|im_start|>", "<|im_end|>"]
SPECIAL_BASE = 1_000_000
WORDS = (  # noqa: SIM905
    "the quick brown fox jumps over a lazy dog while seven tired sailors sing about distant harbours and "
    "bright lanterns glowing softly under an autumn sky full of silver clouds"
).split()
SYSTEM = "You are a helpful assistant."
MODEL = "relay"


# ---------------------------------------------------------------------------------------------------------
# The fake engine


@dataclass
class _Stream:
    writer: asyncio.StreamWriter
    total: int  # tokens to send
    n_prompt: int
    limit: bool  # n_predict ends it
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class FakeEngine:
    def __init__(self, rate: float, slots: int, default_tokens: int, n_ctx: int) -> None:
        self.rate = rate
        self.slots = slots
        self.default_tokens = default_tokens
        self.n_ctx = n_ctx
        self.active: list[_Stream] = []
        self.max_active = 0
        self.streams = 0
        self.wake = asyncio.Event()
        # one SSE chunk per token, pre-encoded but for the counters
        self.pieces = [json.dumps(" " + w) for w in WORDS]

    # --- tokenizer: one token per character, ChatML markers one token each
    def tokenize(self, text: str, parse_special: bool = True) -> list[int]:
        out: list[int] = []
        i = 0
        while i < len(text):
            if parse_special and text[i] == "<":
                for k, s in enumerate(SPECIALS):
                    if text.startswith(s, i):
                        out.append(SPECIAL_BASE + k)
                        i += len(s)
                        break
                else:
                    out.append(ord(text[i]))
                    i += 1
            else:
                out.append(ord(text[i]))
                i += 1
        return out

    def detokenize(self, tokens: list[int]) -> str:
        return "".join(SPECIALS[t - SPECIAL_BASE] if t >= SPECIAL_BASE else chr(t) for t in tokens)

    def props(self) -> dict[str, Any]:
        return {
            "chat_template": CHATML,
            "bos_token": "",
            "eos_token": "<|im_end|>",
            "total_slots": self.slots,
            "default_generation_settings": {"n_ctx": self.n_ctx, "params": {}},
            "modalities": {"vision": False},
            "model_path": "fake.gguf",
            "build_info": "bench_relay fake engine",
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                close = headers.get("connection", "").lower() == "close"
                path = target.split("?", 1)[0]
                if method == "POST" and path in ("/completion", "/completions") and body.get("stream"):
                    await self.stream(writer, body)
                    return
                status, answer = self.answer(method, path, body)
                data = json.dumps(answer).encode()
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                    f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[str, Any]:
        if path == "/health":
            return "200 OK", {"status": "ok"}
        if path == "/props":
            return "200 OK", self.props()
        if path == "/slots":
            busy = len(self.active)
            return "200 OK", [{"id": i, "is_processing": i < busy} for i in range(self.slots)]
        if path == "/v1/models":
            return "200 OK", {
                "object": "list",
                "data": [{"id": "fake", "object": "model", "owned_by": "llamacpp"}],
            }
        if path == "/stats":
            return "200 OK", {
                "max_active": self.max_active,
                "streams": self.streams,
                "active": len(self.active),
            }
        if path == "/stats/reset":
            self.max_active = len(self.active)
            self.streams = 0
            return "200 OK", {}
        if path == "/tokenize":
            tokens = self.tokenize(str(body.get("content", "")), bool(body.get("parse_special", True)))
            return "200 OK", {"tokens": tokens}
        if path == "/detokenize":
            return "200 OK", {"content": self.detokenize(list(body.get("tokens") or []))}
        if path in ("/completion", "/completions"):  # not streamed: n_predict 0 probes (image tokens)
            prompt = body.get("prompt")
            n = len(prompt) if isinstance(prompt, (list, str)) else 1
            return "200 OK", {"content": "", "stop": True, "tokens_evaluated": n, "tokens_predicted": 0}
        return "404 Not Found", {"error": {"code": 404, "message": "not found", "type": "not_found_error"}}

    def _plan(self, body: dict[str, Any]) -> tuple[int, int, bool]:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            n_prompt, text = len(prompt), self.detokenize([t for t in prompt if isinstance(t, int)])
        else:
            text = str(prompt or "")
            n_prompt = len(self.tokenize(text))
        want = self.default_tokens
        at = text.find("REPLY=")
        if at >= 0:
            digits = ""
            for ch in text[at + 6 : at + 14]:
                if not ch.isdigit():
                    break
                digits += ch
            want = int(digits or want)
        n_predict = int(body.get("n_predict") or -1)
        if 0 < n_predict < want:
            return n_predict, n_prompt, True
        return want, n_prompt, False

    async def stream(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
        total, n_prompt, limit = self._plan(body)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Keep-Alive: timeout=5, max=100\r\nConnection: keep-alive\r\n\r\n"
        )
        st = _Stream(writer, total, n_prompt, limit)
        self.streams += 1
        self._send(st)  # the first token at once (prefill taken as instant)
        if not st.done.is_set():
            self.active.append(st)
            self.max_active = max(self.max_active, len(self.active))
            self.wake.set()
            await st.done.wait()
        try:  # noqa: SIM105
            await writer.drain()
        except ConnectionError:
            pass

    def _chunk(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def _send(self, st: _Stream) -> None:
        if st.writer.is_closing():
            st.done.set()
            return
        if st.sent < st.total:
            piece = self.pieces[st.sent % len(self.pieces)]
            st.sent += 1
            data = (
                'data: {"index":0,"content":%s,"tokens":[],"stop":false,"id_slot":-1,'  # noqa: UP031
                '"tokens_predicted":%d,"tokens_evaluated":%d}\n\n' % (piece, st.sent, st.n_prompt)
            )
            st.writer.write(self._chunk(data.encode()))
            if st.sent < st.total:
                return
        final = {
            "index": 0,
            "content": "",
            "tokens": [],
            "id_slot": 0,
            "stop": True,
            "model": "fake",
            "tokens_predicted": st.sent,
            "tokens_evaluated": st.n_prompt,
            "generation_settings": {"n_predict": st.total, "temperature": 0.0},
            "prompt": "",
            "has_new_line": False,
            "truncated": False,
            "stop_type": "limit" if st.limit else "eos",
            "stopping_word": "",
            "tokens_cached": st.n_prompt + st.sent,
            "timings": {
                "cache_n": 0,
                "prompt_n": st.n_prompt,
                "prompt_ms": 1.0,
                "predicted_n": st.sent,
                "predicted_ms": 1000.0 * st.sent / (self.rate or 1000.0),
            },
        }
        st.writer.write(
            self._chunk(b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n")
            + b"0\r\n\r\n"
        )
        st.done.set()

    async def ticker(self) -> None:
        """One decode step for every open stream: at `rate` steps a second (0: as fast as possible, a
        stream whose socket is backed up skipping steps)."""
        period = 1.0 / self.rate if self.rate else 0.0
        nxt = time.perf_counter()
        while True:
            if not self.active:
                self.wake.clear()
                await self.wake.wait()
                nxt = time.perf_counter() + period
            if period:
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                nxt = max(nxt + period, time.perf_counter() - period)
            else:
                await asyncio.sleep(0)
            keep = []
            for st in self.active:
                if not period and st.writer.transport.get_write_buffer_size() > 65536:
                    keep.append(st)
                    continue
                self._send(st)
                if not st.done.is_set():
                    keep.append(st)
            self.active = keep


async def serve_engine(port: int, rate: float, slots: int, tokens: int, n_ctx: int) -> None:
    engine = FakeEngine(rate, slots, tokens, n_ctx)
    server = await asyncio.start_server(engine.handle, "127.0.0.1", port, backlog=1024)
    asyncio.get_running_loop().create_task(engine.ticker())
    print(f"fake engine on {port}", flush=True)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------------------------------------------
# The client: raw HTTP/1.1 over asyncio, the same code for every side


@dataclass
class Result:
    ttft: float
    total: float
    tokens: int
    deltas: int
    error: str = ""


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def _body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


@dataclass(frozen=True)
class Flavor:
    delta: bytes  # an event block holding text
    final: bytes  # the event block with the usage
    tokens: Any  # the completion tokens, from the final block's JSON


def _data(block: bytes) -> Any:
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            return json.loads(line[5:])
    return {}


DIRECT = Flavor(b'"stop":false', b'"stop":true', lambda d: int(d.get("tokens_predicted") or 0))
RUNS = Flavor(
    b"event: thread.message.delta\n",
    b"event: thread.run.",  # completed / incomplete / failed: the last thread.run.* event has the usage
    lambda d: int(((d.get("usage") or {}).get("completion_tokens")) or 0),
)
RESPONSES = Flavor(
    b"event: response.output_text.delta\n",
    b"event: response.completed\n",
    lambda d: int((((d.get("response") or {}).get("usage") or {}).get("output_tokens")) or 0),
)


async def stream_one(port: int, path: str, body: dict[str, Any], flavor: Flavor, key: str | None) -> Result:
    payload = json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}"
            f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + payload
        )
        status, headers = await _read_head(reader)
        first = None
        deltas = tokens = 0
        buf = b""
        final: Any = None
        async for chunk in _body_chunks(reader, headers):
            buf += chunk
            if b"\n\n" not in buf:
                continue
            *blocks, buf = buf.split(b"\n\n")
            for block in blocks:
                if flavor.delta in block:
                    deltas += 1
                    if first is None:
                        first = time.perf_counter()
                elif flavor.final in block:
                    final = block
        end = time.perf_counter()
        if status != 200:
            return Result(0, end - start, 0, 0, f"HTTP {status}: {buf[:300]!r}")
        if final is not None:
            tokens = flavor.tokens(_data(final))
        return Result((first or end) - start, end - start, tokens, deltas, "" if final else "no final event")
    finally:
        writer.close()


# ---------------------------------------------------------------------------------------------------------
# Measuring a process


def proc_cpu(pid: int, below: bool = False) -> float:
    """utime + stime of the process (all its threads), in seconds; `below`: and of every process below it
    (assistd with `--processes N` is a supervisor and its N serving processes)."""
    total = 0
    for each in tree(pid) if below else [pid]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def proc_rss(pid: int) -> int:
    """Resident memory of the process and every process below it."""
    total = 0
    for each in tree(pid):
        try:
            lines = Path(f"/proc/{each}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmRSS:")), 0)
    return total


def tree(pid: int) -> list[int]:
    """`pid` and its live descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Round:
    side: str
    c: int
    wall: float
    results: list[Result]
    cpu: dict[str, float]  # seconds over the round, per process
    rss_before: int = 0
    rss_peak: int = 0
    engine_max_active: int = 0
    rows: dict[str, int] | None = None  # --cluster: rows written over the round (RelayCluster.row_counts)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results)

    @property
    def rate(self) -> float:
        return self.tokens / self.wall


# ---------------------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args: argparse.Namespace, engine_port: int, engine_pid: int, server: Any) -> None:
        self.args = args
        self.engine_port = engine_port
        self.engine_pid = engine_pid
        self.server = server
        self.pids = {"assistd": server.proc.pid, "engine": engine_pid, "client": os.getpid()}
        # assistd's processes: the server's, or a cluster's nodes (each with the processes below it)
        self.nodes: list[int] = list(getattr(server, "pids", [server.proc.pid]))
        self.serial = 0
        import httpx

        self.http = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
        )
        self.assistant = (
            self.http.post("/v1/assistants", json={"model": MODEL, "instructions": SYSTEM})
            .raise_for_status()
            .json()["id"]
        )

    def question(self, tokens: int) -> str:
        self.serial += 1
        return f"Request {self.serial:06d}. REPLY={tokens} Write a long story about a lighthouse keeper."

    def prepare(
        self, side: str, c: int, tokens: int
    ) -> list[tuple[int, str, dict[str, Any], Flavor, str | None]]:
        port = self.server.port
        jobs = []
        for _ in range(c):
            q = self.question(tokens)
            if side == "direct":
                prompt = (
                    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n"
                    "<|im_start|>assistant\n"
                )
                body = {
                    "prompt": FAKE_TOKENIZER.tokenize(prompt),
                    "n_predict": tokens + 64,
                    "temperature": 0.0,
                    "top_p": 0.9,
                    "repeat_penalty": 1.1,
                    "stop": [],
                    "stream": True,
                    "cache_prompt": True,
                    "return_tokens": False,
                }
                jobs.append((self.engine_port, "/completion", body, DIRECT, None))
            elif side == "runs":
                thread = (
                    self.http.post("/v1/threads", json={"messages": [{"role": "user", "content": q}]})
                    .raise_for_status()
                    .json()["id"]
                )
                body = {
                    "assistant_id": self.assistant,
                    "stream": True,
                    "temperature": 0.0,
                    "max_completion_tokens": tokens + 64,
                }
                jobs.append((port, f"/v1/threads/{thread}/runs", body, RUNS, KEY))
            else:
                body = {
                    "model": MODEL,
                    "instructions": SYSTEM,
                    "input": q,
                    "stream": True,
                    "temperature": 0.0,
                    "max_output_tokens": tokens + 64,
                    "store": True,
                }
                jobs.append((port, "/v1/responses", body, RESPONSES, KEY))
        return jobs

    def engine_stats(self, reset: bool = False) -> dict[str, Any]:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.engine_port}/stats{'/reset' if reset else ''}").json()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: assistd (all its nodes, with the processes below them), the engine, the client,
        and PostgreSQL (the postmaster and its backends) in a cluster."""
        out = {k: proc_cpu(p) for k, p in self.pids.items() if k != "assistd"}
        out["assistd"] = sum(proc_cpu(p, True) for p in self.nodes)
        if hasattr(self.server, "db_cpu"):
            out["postgres"] = self.server.db_cpu()
        return out

    def rss(self) -> int:
        return sum(proc_rss(p) for p in self.nodes)

    async def _round(self, jobs: list[Any]) -> tuple[list[Result], float, int]:
        peak = self.rss()
        running = True

        async def sample() -> None:
            nonlocal peak
            while running:
                peak = max(peak, self.rss())
                await asyncio.sleep(0.05)

        sampler = asyncio.get_running_loop().create_task(sample())
        start = time.perf_counter()
        results = await asyncio.gather(*(stream_one(*job) for job in jobs))
        wall = time.perf_counter() - start
        running = False
        await sampler
        return list(results), wall, peak

    def round(self, side: str, c: int, tokens: int) -> Round:
        jobs = self.prepare(side, c, tokens)
        counted = side != "direct" and hasattr(self.server, "row_counts")
        # the server's after-work of the previous round (its last commits; in a cluster also PostgreSQL's
        # counts of the threads just made, reported within a second: they are not the round's)
        time.sleep(1.2 if counted else 0.3)
        self.engine_stats(reset=True)
        rows0 = self.server.row_counts() if counted else {}
        rss0 = self.rss()
        cpu0 = self.cpu()
        results, wall, peak = asyncio.run(self._round(jobs))
        time.sleep(0.2)  # a run's last writes after its stream ended are its cost too
        cpu = {k: v - cpu0[k] for k, v in self.cpu().items()}
        rows = None
        if counted:  # PostgreSQL's backends report their counts within a second of going idle
            time.sleep(1.2)
            rows1 = self.server.row_counts()
            rows = {k: rows1[k] - rows0[k] for k in rows1}
        errors = [r.error for r in results if r.error]
        if errors:
            print(f"  {side} c={c}: {len(errors)} errors, first: {errors[0]}", flush=True)
        stats = self.engine_stats()
        return Round(side, c, wall, results, cpu, rss0, peak, stats["max_active"], rows)


KEY = "sk-test-project-a"
FAKE_TOKENIZER = FakeEngine(0, 1, 1, 1)


def fmt_ms(x: float) -> str:
    return f"{x * 1000:.0f}"


def summarize(rounds: list[Round], levels: list[int], sides: list[str]) -> str:
    by = {(r.side, r.c): [x for x in rounds if x.side == r.side and x.c == r.c] for r in rounds}
    cluster = any(r.rows is not None for r in rounds)
    lines = [
        "| streams | side | agg tok/s | vs direct | TTFT p50 / p95 ms | TTFT overhead p50 / p95 ms "
        "| engine max open | assistd CPU s | assistd CPU ms / 1k tok | engine CPU ms / 1k "
        "| client CPU ms / 1k "
        "| RSS / open stream KiB |"
        + (
            " PostgreSQL CPU ms / 1k | event rows / 1k tok | rows ins+upd / 1k tok | rows / s "
            "| event rows / s per stream | deltas / reply |"
            if cluster
            else ""
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" * 6 if cluster else ""),
    ]
    for c in levels:
        direct = by.get(("direct", c))
        d_rate = statistics.median(r.rate for r in direct) if direct else float("nan")
        d_ttft = [x.ttft for r in direct for x in r.results] if direct else []
        for side in sides:
            rs = by.get((side, c))
            if not rs:
                continue
            rate = statistics.median(r.rate for r in rs)
            ttft = [x.ttft for r in rs for x in r.results]
            toks = sum(r.tokens for r in rs)
            cpu = {k: sum(r.cpu[k] for r in rs) for k in rs[0].cpu}
            per_k = {k: 1000 * v * 1000 / max(1, toks) for k, v in cpu.items()}
            rss = statistics.median((r.rss_peak - r.rss_before) / c / 1024 for r in rs)
            over = (
                f"{(percentile(ttft, 0.5) - percentile(d_ttft, 0.5)) * 1000:+.0f} / "
                f"{(percentile(ttft, 0.95) - percentile(d_ttft, 0.95)) * 1000:+.0f}"
                if side != "direct"
                else "-"
            )
            lines.append(
                f"| {c} | {side} | {rate:.0f} | {rate / d_rate:.2f} | {fmt_ms(percentile(ttft, 0.5))} / "
                f"{fmt_ms(percentile(ttft, 0.95))} | {over} | {max(r.engine_max_active for r in rs)} "
                f"| {cpu['assistd']:.2f} | {per_k['assistd'] if side != 'direct' else float('nan'):.1f} "
                f"| {per_k['engine']:.1f} | {per_k['client']:.1f} | {rss if side != 'direct' else 0:.0f} |"
                + (_cluster_columns(rs, per_k, toks, c) if cluster else "")
            )
    return "\n".join(lines)


def _cluster_columns(rs: list[Round], per_k: dict[str, float], toks: int, c: int) -> str:
    """PostgreSQL's CPU, and the rows written (summed over the rounds) per 1,000 tokens and per second."""
    pg = f" {per_k['postgres']:.1f} |" if "postgres" in per_k else " - |"
    counted = [r for r in rs if r.rows is not None]
    if not counted:
        return pg + " - | - | - | - | - |"
    events = sum(r.rows["events"] for r in counted)
    written = sum(r.rows["inserted"] + r.rows["updated"] for r in counted)
    wall = sum(r.wall for r in counted)
    deltas = statistics.median(x.deltas for r in counted for x in r.results)
    return (
        f"{pg} {1000 * events / max(1, toks):.1f} | {1000 * written / max(1, toks):.1f} "
        f"| {written / wall:.0f} | {events / wall / c:.1f} | {deltas:.0f} |"
    )


# ---------------------------------------------------------------------------------------------------------
# The cluster path (--cluster)


class RelayCluster:
    """An API node and a worker node on a database of `postgres`, events through the database. Looks like a
    ServerProcess to the bench (`proc`, `port`, `base_url`, `stop`): the client talks to the API node."""

    EVENT_TABLES = ("run_events", "response_events")

    def __init__(self, postgres: Any, root: Path, name: str, args: list[str]) -> None:
        from bench_support import ServerProcess

        self.postgres = postgres
        self.database = name
        database_url = postgres.new_database(name)
        files = root / "files"
        files.mkdir(parents=True, exist_ok=True)
        common = [*args, "--events", "database", "--files-dir", str(files)]
        self.nodes = []
        try:  # one after the other: the first migrates the new database
            for role in ("api", "worker"):
                node = ServerProcess(root / role, args=common, database_url=database_url, role=role)
                self.nodes.append(node)
        except BaseException:
            self.stop()
            raise
        self.api = self.nodes[0]
        self.proc, self.port, self.base_url = self.api.proc, self.api.port, self.api.base_url
        self.pids = [node.proc.pid for node in self.nodes]

    def db_cpu(self) -> float:
        """CPU seconds of PostgreSQL: its live processes', and what the postmaster's ended backends used (its
        children's times, counted when it reaps them)."""
        pid = self.postgres.pid()
        if pid is None:
            return 0.0
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        return proc_cpu(pid, True) + reaped

    def row_counts(self) -> dict[str, int]:
        """Rows inserted into the event tables, and inserted / updated in every table, so far."""
        import psycopg

        with psycopg.connect(self.postgres.dsn_for(self.database), autocommit=True) as conn:
            rows = conn.execute("SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables").fetchall()
        return {
            "events": sum(ins for name, ins, _ in rows if name in self.EVENT_TABLES),
            "inserted": sum(ins for _, ins, _ in rows),
            "updated": sum(upd for _, _, upd in rows),
        }

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


# ---------------------------------------------------------------------------------------------------------
# py-spy


def pyspy(pid: int, seconds: float, out: Path, gil: bool = False) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "py-spy"
    cmd = [str(exe), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250"]
    cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
    if gil:
        cmd.append("--gil")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f]
        stacks.append((frames, int(count)))
    return stacks


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "file.py:function"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    fname = where.rsplit(":", 1)[0]
    for cut in ("site-packages/", "src/", "lib/python3.11/"):
        if cut in fname:
            fname = fname.split(cut, 1)[1]
            break
    return f"{fname}:{name}"


CATEGORIES = [
    # (label, substring of a frame's file:function), first match from the leaf up wins
    ("json encode/decode", ("json/encoder.py", "json/decoder.py", "json/__init__.py")),
    ("pydantic", ("pydantic",)),
    ("SQLAlchemy / sqlite", ("sqlalchemy", "sqlmodel", "sqlite3")),
    ("httpx/httpcore/h11 (engine SSE read)", ("httpx/", "httpcore/", "h11/")),
    ("uvicorn/litestar (SSE write, ASGI)", ("uvicorn/", "litestar/", "starlette/", "anyio/")),
    ("asyncio loop", ("asyncio/",)),
    ("threading / locks", ("threading.py",)),
    ("logging", ("logging/",)),
]


def profile_report(path: Path, tokens: int, runs: int, top: int = 25) -> str:
    stacks = read_raw(path)
    total = sum(n for _, n in stacks)
    if not total:
        return f"{path}: no samples"
    selfc: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    idle = ("threading.py:Condition.wait", "asyncio/runners.py:Runner.run", "thread.py:_worker")
    stacks = [(f, n) for f, n in stacks if not any(k in _short(f[-1]) for k in idle)]  # waiting, not CPU
    total = sum(n for _, n in stacks)
    for frames, n in stacks:
        short = [_short(f) for f in frames]
        selfc[short[-1]] += n
        for f in set(short):
            incl[f] += n
        for label, keys in CATEGORIES:
            if any(any(k in f for k in keys) for f in short[-6:]):
                cats[label] += n
                break
        else:
            cats["other"] += n
    out = [f"{path.name}: {total} samples (at 250 Hz: {total / 250:.1f} CPU s), {tokens} tokens, {runs} runs"]
    out.append("\nself (leaf) samples, share:")
    for f, n in selfc.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {f}")
    out.append("\ninclusive, assistd and key library frames, share:")
    shown = 0
    for f, n in incl.most_common(400):
        if "assistd/" in f or any(
            k in f for k in ("json/", "h11/", "uvicorn/", "litestar/", "sqlalchemy/orm/session")
        ):
            out.append(f"  {100 * n / total:5.1f}%  {f}")
            shown += 1
            if shown >= 45:
                break
    out.append("\nby leaf category (the nearest of the 6 innermost frames):")
    for label, n in cats.most_common():
        out.append(f"  {100 * n / total:5.1f}%  {label}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------


def start_engine(port: int, rate: float, slots: int, tokens: int) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "engine", "--port", str(port), "--rate", str(rate)]
    cmd += ["--slots", str(slots), "--tokens", str(tokens)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "engine":
        p = argparse.ArgumentParser()
        p.add_argument("engine")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--rate", type=float, default=100.0)
        p.add_argument("--slots", type=int, default=256)
        p.add_argument("--tokens", type=int, default=200)
        p.add_argument("--n-ctx", type=int, default=65536)
        a = p.parse_args()
        asyncio.run(serve_engine(a.port, a.rate, a.slots, a.tokens, a.n_ctx))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,16,64,256")
    parser.add_argument("--rate", type=float, default=100.0, help="tok/s per stream (0: unlimited)")
    parser.add_argument("--tokens", type=int, default=200, help="completion tokens per reply")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per level and side")
    parser.add_argument("--c1-rounds", type=int, default=8, help="rounds at 1 stream (TTFT percentiles)")
    parser.add_argument("--apis", default="runs,responses")
    parser.add_argument("--per-run", action="store_true", help="split CPU into per run and per token")
    parser.add_argument("--unlimited", default="", help="levels to repeat at unlimited rate (max tok/s)")
    parser.add_argument("--profile", default="", help="levels to profile with py-spy (at --rate)")
    parser.add_argument("--profile-unlimited", default="", help="levels to profile at unlimited rate")
    parser.add_argument("--profile-seconds", type=float, default=12.0)
    parser.add_argument("--server-args", default="", help="extra `assistd serve` arguments")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the cluster path: PostgreSQL, an API node and a worker node, events through the database",
    )
    parser.add_argument("--out", default="/tmp/relay")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    apis = [a for a in args.apis.split(",") if a]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_support import ServerProcess, cpu_model, free_port, load

    slots = max([*levels, 16])
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; rate {args.rate or 'unlimited'} tok/s/stream, "
        f"{args.tokens} tokens/reply, engine slots {slots}; {load()}",
        flush=True,
    )
    engines: dict[float, tuple[subprocess.Popen, int]] = {}

    def engine_for(rate: float) -> tuple[subprocess.Popen, int]:
        if rate not in engines:
            port = free_port()
            engines[rate] = (start_engine(port, rate, slots, args.tokens), port)
        return engines[rate]

    rounds: list[Round] = []
    postgres: Any = None
    with tempfile.TemporaryDirectory(prefix="relay-") as tmp:
        servers = []
        try:
            if args.cluster:
                from tests.postgres import PostgresServer

                postgres = PostgresServer()
                version = postgres.bindir.parent.name
                print(f"cluster: PostgreSQL {version}, an API node and a worker node", flush=True)

            def server_for(rate: float) -> tuple[Any, Bench]:
                proc, port = engine_for(rate)
                data = Path(tmp) / f"data-{len(servers)}"  # a second server at the same rate: its own
                data.mkdir()
                models = data / "models.toml"
                models.write_text(
                    f'[[models]]\nname = "{MODEL}"\nurl = "http://127.0.0.1:{port}"\n'
                    f"chat_template = {json.dumps(CHATML)}\nparallel = {slots}\n"
                )
                extra = ["--models-file", str(models), "--default-model", MODEL]
                extra += shlex.split(args.server_args)
                if postgres is not None:
                    server: Any = RelayCluster(postgres, data, f"relay{len(servers)}", extra)
                else:
                    server = ServerProcess(data, args=extra)
                servers.append(server)
                return server, Bench(args, port, proc.pid, server)

            server, bench = server_for(args.rate)
            sides = ["direct", *apis]
            for side in sides:  # warm-up
                bench.round(side, 1, 20)
                bench.round(side, 4, 20)
            time.sleep(1.0)
            idle0, t0 = bench.cpu()["assistd"], time.perf_counter()
            time.sleep(5.0)
            idle = (bench.cpu()["assistd"] - idle0) / (time.perf_counter() - t0)
            print(f"assistd idle CPU: {idle * 1000:.1f} ms per second (nothing running)", flush=True)
            for c in levels:
                n = args.c1_rounds if c == 1 else args.rounds
                for r in range(n):
                    for side in sides if r % 2 == 0 else sides[::-1]:
                        rd = bench.round(side, c, args.tokens)
                        rounds.append(rd)
                        print(
                            f"  c={c} {side}: {rd.rate:.0f} tok/s, wall {rd.wall:.2f}s, assistd CPU "
                            f"{rd.cpu['assistd']:.2f}s, engine open max {rd.engine_max_active}; {load()}",
                            flush=True,
                        )
            print(
                f"\n### Paced at {args.rate or 'unlimited'} tok/s per stream, {args.tokens} tokens per reply; "  # noqa: E501
                f"{load()}\n"
            )
            print(summarize(rounds, levels, sides))

            if args.per_run:
                print("\n### CPU per run and per token (16 streams, 2 reply lengths, assistd CPU s)\n")
                for side in apis:
                    pts = []
                    for toks in (20, 400):
                        for _ in range(2):
                            rd = bench.round(side, 16, toks)
                            pts.append((16, rd.tokens, rd.cpu["assistd"]))
                    short = [p for p in pts if p[1] < 16 * 100]
                    long_ = [p for p in pts if p[1] >= 16 * 100]
                    t1, c1 = statistics.mean(p[1] for p in short), statistics.mean(p[2] for p in short)
                    t2, c2 = statistics.mean(p[1] for p in long_), statistics.mean(p[2] for p in long_)
                    per_tok = (c2 - c1) / (t2 - t1)
                    per_run = (c1 - per_tok * t1) / 16
                    print(
                        f"- {side}: {per_tok * 1e6:.1f} ms per 1,000 tokens (marginal), "
                        f"{per_run * 1000:.1f} ms per run (fixed); points {pts}"
                    )

            def run_profiles(levels_: list[int], label: str, tokens: int) -> None:
                for c in levels_:
                    for side in apis:
                        # every node of a cluster is sampled (the API node, then the worker node)
                        names = (
                            [""] if len(bench.nodes) == 1 else [f"-node{i}" for i in range(len(bench.nodes))]
                        )
                        paths = [out / f"pyspy-{side}-c{c}-{label}{name}.txt" for name in names]
                        spies = [
                            pyspy(pid, args.profile_seconds, path, gil=True)
                            for pid, path in zip(bench.nodes, paths, strict=True)
                        ]
                        time.sleep(1.0)
                        t_end = time.time() + args.profile_seconds - 1.5
                        toks = runs = 0
                        while time.time() < t_end:  # rounds back to back for the sampling window
                            rd = bench.round(side, c, tokens)
                            toks += rd.tokens
                            runs += c
                        for spy, path, name in zip(spies, paths, names, strict=True):
                            spy.wait()
                            err = spy.stderr.read().decode() if spy.stderr else ""
                            if not path.exists():
                                print(f"py-spy failed: {err[-500:]}")
                                continue
                            report = profile_report(path, toks, runs)
                            path.with_suffix(".report.txt").write_text(report)
                            print(f"\n### py-spy, {side}, {c} streams, {label}{name.replace('-', ', ')}\n")
                            print(report, flush=True)

            prof = [int(x) for x in args.profile.split(",") if x]
            run_profiles(prof, f"{args.rate:g} tok per s", args.tokens)
            unl = [int(x) for x in args.unlimited.split(",") if x]
            uprof = [int(x) for x in args.profile_unlimited.split(",") if x]
            if unl or uprof:
                server0 = server
                server, bench = server_for(0.0)
                server0.stop()
                for side in sides:
                    bench.round(side, 4, 50)
                urounds: list[Round] = []
                for c in unl:
                    for _r in range(args.rounds):
                        for side in sides:
                            rd = bench.round(side, c, max(args.tokens, 2000))
                            urounds.append(rd)
                            print(
                                f"  unlimited c={c} {side}: {rd.rate:.0f} tok/s, assistd CPU "
                                f"{rd.cpu['assistd']:.2f}s; {load()}",
                                flush=True,
                            )
                if unl:
                    print(
                        f"\n### Unlimited rate (as fast as each side reads), {max(args.tokens, 2000)} tokens "
                        f"per reply; {load()}\n"
                    )
                    print(summarize(urounds, unl, sides), flush=True)
                run_profiles(uprof, "unlimited", 2000)
        finally:
            for s in servers:
                s.stop()
            for proc, _ in engines.values():
                proc.terminate()
                proc.wait()
            if postgres is not None:
                postgres.close()
    print(f"\ndone; {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
