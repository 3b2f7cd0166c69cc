"""Benchmark: concurrent streamed runs through assistd vs llama.cpp's server engine driven raw.

One engine process (`assistd engine MODEL --parallel 16`) serves both sides, so the ratio isolates
assistd's overhead:
  - raw: the engine's own streamed /completion API, the exact prompt assistd renders and the body its
    backend sends, one thread per request;
  - assistd: an `assistd serve` process whose model is that engine (models file `url`), driven with the
    official SDK (runs.stream), one thread per run, each on its own thread (conversation);
and beside them assistd's default path, the engine embedded in the server (`make serve`).

At each concurrency (1, 4, 16 by default) every round starts that many requests at once on each side,
the sides interleaved (which goes first alternates by round); 64 completion tokens each, temperature 0.
Aggregate tok/s = completion tokens of the round / its wall time (first start to last end), median over
the rounds; TTFT (request to first text) p50/p95 over every request of every round. Every request has a
prompt of its own (a serial number in it), so no side reuses another's KV cache beyond the system prompt.

Usage: .venv/bin/python scripts/bench_concurrency.py [--rounds 5] [--levels 1,4,16] [--tokens 64]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_support import (
    DEFAULT_MODEL_NAME,
    MODEL_PATH,
    REMOTE_NAME,
    EngineProcess,
    Renderer,
    Timed,
    assistd_run,
    assistd_server,
    load,
    raw_completion,
    sdk_client,
)

SYSTEM = "You are a helpful assistant."
TOPICS = ["a lighthouse keeper", "a lost robot", "a mountain village", "a river journey", "an old clock"]
SERIAL = itertools.count(1)


def question() -> str:
    n = next(SERIAL)  # fixed width: every prompt has the same number of tokens
    return f"Request {n:06d}. Write a long story about {TOPICS[n % len(TOPICS)]}, with many details."


def at_once(jobs: list[Callable[[], Timed]]) -> tuple[list[Timed], float]:
    """Runs the jobs in threads of their own, released together; (their results, wall time)."""
    gate = threading.Barrier(len(jobs) + 1)
    results: list[Timed | BaseException | None] = [None] * len(jobs)

    def work(i: int) -> None:
        gate.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, Timed)], wall


class Side:
    """One way of generating: `jobs(c)` prepares c requests (untimed) and returns them as callables."""

    def __init__(self, label: str, jobs: Callable[[int], list[Callable[[], Timed]]]) -> None:
        self.label = label
        self.jobs = jobs
        self.rates: dict[int, list[float]] = {}
        self.ttfts: dict[int, list[float]] = {}
        self.tokens: dict[int, list[int]] = {}

    def measure(self, c: int) -> None:
        results, wall = at_once(self.jobs(c))
        self.rates.setdefault(c, []).append(sum(r.tokens for r in results) / wall)
        self.ttfts.setdefault(c, []).extend(r.ttft for r in results)
        self.tokens.setdefault(c, []).extend(r.tokens for r in results)

    def rate(self, c: int) -> float:
        return statistics.median(self.rates[c])

    def ttft(self, c: int, q: float) -> float:
        return percentile(self.ttfts[c], q) * 1000


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..1)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def raw_side(engine: EngineProcess, renderer: Renderer, tokens: int) -> Side:
    def jobs(c: int) -> list[Callable[[], Timed]]:
        prompts = [renderer.prompt(SYSTEM, [{"role": "user", "content": question()}]) for _ in range(c)]
        stop = renderer.plain_stop
        return [lambda p=p: raw_completion(engine.client, p, tokens, stop=stop) for p in prompts]

    return Side("llama.cpp engine, raw", jobs)


def assistd_side(label: str, client: Any, model: str, tokens: int) -> Side:
    assistant = client.beta.assistants.create(model=model, instructions=SYSTEM)

    def jobs(c: int) -> list[Callable[[], Timed]]:
        threads = [
            client.beta.threads.create(messages=[{"role": "user", "content": question()}]) for _ in range(c)
        ]
        return [lambda t=t: assistd_run(client, assistant.id, t.id, tokens) for t in threads]

    return Side(label, jobs)


def check_prompts(engine: EngineProcess, renderer: Renderer, client: Any, tokens: int) -> None:
    """The raw side must send what assistd sends: same prompt tokens and the same greedy reply length."""
    assistant = client.beta.assistants.create(model=REMOTE_NAME, instructions=SYSTEM)
    text = question()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    ours = assistd_run(client, assistant.id, thread.id, tokens)
    prompt = renderer.prompt(SYSTEM, [{"role": "user", "content": text}])
    raw = raw_completion(engine.client, prompt, tokens, stop=renderer.plain_stop)
    same = "same" if ours.prompt_tokens == raw.prompt_tokens else "DIFFERENT"
    print(
        f"prompt check: assistd {ours.prompt_tokens} prompt tokens, raw {raw.prompt_tokens} ({same}); "
        f"completion tokens {ours.tokens} / {raw.tokens}"
    )


def table(levels: list[int], raw: Side, ours: Side, embedded: Side | None, threads: str) -> str:
    head = (
        "| concurrent runs | threads | raw engine agg tok/s | assistd (url) agg tok/s | ratio "
        "| raw TTFT p50 / p95 | assistd TTFT p50 / p95 | TTFT overhead p50 / p95 |"
    )
    sep = "|---|---|---|---|---|---|---|---|"
    if embedded:
        head += " assistd embedded agg tok/s | embedded TTFT p50 / p95 |"
        sep += "---|---|"
    lines = [head, sep]
    for c in levels:
        r50, r95, o50, o95 = raw.ttft(c, 0.5), raw.ttft(c, 0.95), ours.ttft(c, 0.5), ours.ttft(c, 0.95)
        row = (
            f"| {c} | {threads} | {raw.rate(c):.1f} | {ours.rate(c):.1f} | {ours.rate(c) / raw.rate(c):.2f} "
            f"| {r50:.0f} / {r95:.0f} ms | {o50:.0f} / {o95:.0f} ms "
            f"| {o50 - r50:+.0f} / {o95 - r95:+.0f} ms |"
        )
        if embedded:
            e50, e95 = embedded.ttft(c, 0.5), embedded.ttft(c, 0.95)
            row += f" {embedded.rate(c):.1f} | {e50:.0f} / {e95:.0f} ms |"
        lines.append(row)
    return "\n".join(lines)


def goals(levels: list[int], raw: Side, ours: Side) -> list[str]:
    out = []
    for c in levels:
        ratio = ours.rate(c) / raw.rate(c)
        out.append(
            f"agg tok/s ratio at c={c}: {ratio:.2f} (goal >= 0.95: {'met' if ratio >= 0.95 else 'MISSED'})"
        )
    if 1 in levels:
        d = ours.ttft(1, 0.5) - raw.ttft(1, 0.5)
        out.append(f"TTFT p50 overhead at c=1: {d:.0f} ms (goal <= 20 ms: {'met' if d <= 20 else 'MISSED'})")
    top = max(levels)
    d = ours.ttft(top, 0.95) - raw.ttft(top, 0.95)
    out.append(
        f"TTFT p95 overhead at c={top}: {d:.0f} ms (goal <= 100 ms: {'met' if d <= 100 else 'MISSED'})"
    )
    return out


def main() -> int:
    import xllamacpp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--levels", default="1,4,16", help="concurrent runs, comma-separated")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=16, help="slots of the engine process")
    parser.add_argument("--n-ctx", type=int, default=8192, help="context of each slot")
    parser.add_argument(
        "--n-threads", type=int, default=None, help="engine CPU threads (default llama.cpp's)"
    )
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to a GPU (-1: all)")
    parser.add_argument("--no-embedded", action="store_true", help="skip assistd's embedded engine")
    parser.add_argument(
        "--embedded-parallel", type=int, default=None, help="embedded engine slots (default: the server's)"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    from assistd.llm.embedded import default_threads

    threads = str(args.n_threads or default_threads())  # the engine's default, as `assistd engine` picks it
    print(
        f"machine: {__import__('os').cpu_count()} cores, model {MODEL_PATH.name}, "
        f"xllamacpp {getattr(xllamacpp, '__version__', '?')}, engine --parallel {args.parallel}, "
        f"n_ctx {args.n_ctx}/slot, threads {threads}, gpu layers {args.n_gpu_layers}; {load()}",
        flush=True,
    )
    renderer = Renderer()
    engine_args = ["--n-ctx", str(args.n_ctx), "--n-gpu-layers", str(args.n_gpu_layers)]
    if args.n_threads:
        engine_args += ["--n-threads", str(args.n_threads)]
    engine = EngineProcess(args.parallel, args.n_ctx, args.n_threads, n_gpu_layers=args.n_gpu_layers)
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            remote = assistd_server(Path(tmp) / "remote", url=engine.url)
            servers.append(remote)
            client = sdk_client(remote)
            check_prompts(engine, renderer, client, args.tokens)
            sides = [
                raw_side(engine, renderer, args.tokens),
                assistd_side("assistd, engine by url", client, REMOTE_NAME, args.tokens),
            ]
            if not args.no_embedded:
                extra = engine_args + (
                    ["--parallel", str(args.embedded_parallel)] if args.embedded_parallel else []
                )
                embedded = assistd_server(Path(tmp) / "embedded", args=extra)
                servers.append(embedded)
                sides.append(
                    assistd_side("assistd embedded", sdk_client(embedded), DEFAULT_MODEL_NAME, args.tokens)
                )
            for side in sides:  # warm-up: models loaded, pools and caches primed
                side.measure(1)
                side.rates.clear()
                side.ttfts.clear()
                side.tokens.clear()
            for r in range(args.rounds):
                for c in levels:
                    order = sides if r % 2 == 0 else sides[::-1]
                    for side in order:
                        side.measure(c)
                print(f"round {r + 1}/{args.rounds} done; {load()}", flush=True)
        finally:
            for server in servers:
                server.stop()
            engine.stop()
    raw, ours = sides[0], sides[1]
    emb = sides[2] if len(sides) > 2 else None
    for side in sides:
        for c in levels:
            short = [n for n in side.tokens[c] if n < args.tokens]
            if short:
                print(f"note: {side.label}, c={c}: {len(short)} replies ended before {args.tokens} tokens")
    print(f"\n{args.tokens} tokens per run, temperature 0, median of {args.rounds} rounds; {load()}\n")
    print(table(levels, raw, ours, emb, threads))
    print()
    for line in goals(levels, raw, ours):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
