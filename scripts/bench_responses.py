"""Benchmark: streamed responses (the Responses API) vs llama.cpp's engine driven raw; KV reuse in a chain.

Concurrent streamed responses against the engine's own API, and KV reuse along a `previous_response_id`
chain.

One engine process (`assistd engine MODEL --parallel 16`) serves both sides, as in bench_concurrency.py, so
the ratio isolates assistd's overhead:
  - raw: the engine's own streamed /completion API with the exact prompt assistd renders for a response
    with `instructions` and one user message (the instructions as the system message, then the message:
    the same rendering as a run's) and the body its backend sends, one thread per request;
  - assistd: an `assistd serve` process whose model is that engine (models file `url`), driven with the
    official SDK (`responses.create(stream=True)`), one thread per request.

1. At each concurrency (1 and 16 by default) every round starts that many requests at once on each side,
   the sides interleaved (which goes first alternates by round); --tokens completion tokens each,
   temperature 0, the prompts of bench_concurrency.py (each with a serial number: no KV reuse beyond the
   system prompt). Aggregate tok/s = completion tokens of the round / its wall time, median over the
   rounds (goal: assistd >= 0.95 of raw); TTFT = request to the first output_text delta (raw: to the first
   text), p50/p95 over every request (goal: p50 overhead <= 20 ms at c=1). For assistd the TTFT is split
   at request -> `response.created` (the create: checks, rows, queueing; the stream opens) and, for
   requests sent alone, request -> its request to the engine (claim, history, prompt; the time of that
   request's answer in the server's log: llama.cpp answers a stream's headers at once).
2. --turns turns of a `previous_response_id` chain (a short user message each, 16 output tokens,
   temperature 0): turn N's TTFT, whose prompt the engine's slot mostly holds from turn N-1, against the
   same turn-N prompt sent raw with `cache_prompt: false` (no KV reuse); median over --chains chains
   (goal: <= 0.05). Beside them, a chain of the same shape sent raw (the engine's own reuse), its turns
   interleaved with assistd's.

Usage: .venv/bin/python scripts/bench_responses.py [--rounds 3] [--levels 1,16] [--tokens 64] [--turns 20]
       [--chains 3] [--server-args '--worker-runs 16'] [--quick]
A default run takes about 5 minutes on the 2-core development machine at load 1 (9 at load 6); --quick
(1 round, 16 tokens, one 5-turn chain) about 40 seconds. Other work on the machine shows in every figure:
say the load with the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_concurrency import SYSTEM, Side, percentile, question
from bench_support import (
    MODEL_PATH,
    REMOTE_NAME,
    EngineProcess,
    Renderer,
    Timed,
    assistd_response,
    assistd_server,
    cpu_model,
    engine_request_times,
    load,
    raw_completion,
    sdk_client,
    time_to_engine,
)

CHAIN_TOKENS = 16
CHAIN_SERIAL = itertools.count(1)
ASKS = [
    "Name an animal that lives in the sea.",
    "Give one more, and say where it lives.",
    "Which of them is the largest?",
    "Name a colour you would paint a boat.",
    "Say a word that rhymes with ship.",
]


class TimedSide(Side):
    """A side that also keeps, per concurrency, every request's timing."""

    def __init__(self, label: str) -> None:
        super().__init__(label, self._jobs)
        self.timed: dict[int, list[Timed]] = {}

    def _jobs(self, c: int) -> list[Callable[[], Timed]]:
        requests = [self.prepare(question()) for _ in range(c)]  # before the round starts
        return [lambda r=r, c=c: self._kept(c, self.send(r)) for r in requests]

    def prepare(self, text: str) -> str:
        return text

    def send(self, request: str) -> Timed:
        raise NotImplementedError

    def _kept(self, c: int, timed: Timed) -> Timed:
        self.timed.setdefault(c, []).append(timed)
        return timed

    def tail_ms(self, c: int) -> float:
        return percentile([t.tail for t in self.timed[c]], 0.5) * 1000


class RawSide(TimedSide):
    def __init__(self, engine: EngineProcess, renderer: Renderer, tokens: int) -> None:
        super().__init__("llama.cpp engine, raw")
        self.engine = engine
        self.renderer = renderer
        self.max_tokens = tokens

    def prepare(self, text: str) -> str:
        return self.renderer.prompt(SYSTEM, [{"role": "user", "content": text}])

    def send(self, request: str) -> Timed:
        return raw_completion(self.engine.client, request, self.max_tokens, stop=self.renderer.plain_stop)


class ResponsesSide(TimedSide):
    """assistd's side; its timings also hold the time to `response.created` and, for requests sent alone
    (c=1, matched with the server's log), to its engine request."""

    def __init__(self, client: Any, tokens: int) -> None:
        super().__init__("assistd responses, engine by url")
        self.client = client
        self.max_tokens = tokens
        self.to_engine: dict[int, list[float]] = {}

    def send(self, request: str) -> Timed:
        return assistd_response(self.client, REMOTE_NAME, SYSTEM, request, self.max_tokens)

    def created_ms(self, c: int) -> float:
        return percentile([t.created for t in self.timed[c]], 0.5) * 1000

    def match_log(self, engine_times: list[float]) -> None:
        found = [time_to_engine(t, engine_times) for t in self.timed.get(1, [])]
        self.to_engine[1] = [x for x in found if x is not None]

    def to_engine_ms(self, c: int) -> float | None:
        values = self.to_engine.get(c)
        return percentile(values, 0.5) * 1000 if values else None


def check_prompts(engine: EngineProcess, renderer: Renderer, client: Any, tokens: int) -> None:
    """The raw side must send what assistd sends: same prompt tokens, the same greedy reply."""
    text = question()
    ours = assistd_response(client, REMOTE_NAME, SYSTEM, text, tokens)
    prompt = renderer.prompt(SYSTEM, [{"role": "user", "content": text}])
    raw = raw_completion(engine.client, prompt, tokens, stop=renderer.plain_stop)
    same = "same" if ours.prompt_tokens == raw.prompt_tokens else "DIFFERENT"
    reply = "same" if ours.text == raw.text else "DIFFERENT"
    print(
        f"prompt check: assistd {ours.prompt_tokens} prompt tokens, raw {raw.prompt_tokens} ({same}); "
        f"completion tokens {ours.tokens} / {raw.tokens}, reply text {reply}",
        flush=True,
    )


class Chain:
    """One chain's turns through assistd (KV reuse), turn N's prompt raw with no reuse, and the turns of a
    chain of the same shape sent raw (the engine's own KV reuse, for comparison)."""

    def __init__(self, ours: list[Timed], cold: Timed, raw: list[Timed], raw_prompt_tokens: int) -> None:
        self.ours = ours  # every turn through assistd
        self.last = ours[-1]
        self.cold = cold
        self.raw = raw  # every turn of the raw chain
        self.raw_last = raw[-1]
        self.raw_prompt_tokens = raw_prompt_tokens
        self.to_engine: list[float] = []  # turns 2..N: request -> assistd's engine request (server log)


def ask(k: int, n: int) -> str:
    return f"Chat {k:03d}, turn {n:02d}. {ASKS[(n - 1) % len(ASKS)]}"


def run_chain(engine: EngineProcess, renderer: Renderer, client: Any, turns: int) -> Chain:
    """Turns 1..N of a chain through assistd and of a chain of the same shape sent raw, turn by turn
    (which goes first alternates), then turn N's prompt of assistd's chain raw with no reuse. Each chain
    has its own first message: nothing is reused from another chain."""
    stop = renderer.plain_stop
    mine, theirs = next(CHAIN_SERIAL), next(CHAIN_SERIAL)
    ours: list[Timed] = []
    raw: list[Timed] = []
    shown: list[dict[str, str]] = []  # assistd's chain as the model reads it
    raw_shown: list[dict[str, str]] = []

    def ours_turn(n: int) -> None:
        previous = ours[-1].id if ours else None
        if ours:
            shown.append({"role": "assistant", "content": ours[-1].text})
        shown.append({"role": "user", "content": ask(mine, n)})
        ours.append(assistd_response(client, REMOTE_NAME, SYSTEM, ask(mine, n), CHAIN_TOKENS, previous))

    def raw_turn(n: int) -> None:
        if raw:
            raw_shown.append({"role": "assistant", "content": raw[-1].text})
        raw_shown.append({"role": "user", "content": ask(theirs, n)})
        raw.append(raw_completion(engine.client, renderer.prompt(SYSTEM, raw_shown), CHAIN_TOKENS, stop=stop))

    for n in range(1, turns + 1):
        for turn in (ours_turn, raw_turn) if n % 2 else (raw_turn, ours_turn):
            turn(n)
    prompt = renderer.prompt(SYSTEM, shown)
    cold = raw_completion(engine.client, prompt, CHAIN_TOKENS, cache_prompt=False, stop=stop)
    return Chain(ours, cold, raw, renderer.count(prompt))


def ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "n/a"


def overhead_table(levels: list[int], raw: RawSide, ours: ResponsesSide) -> str:
    lines = [
        "| concurrent requests | raw engine agg tok/s | responses agg tok/s | ratio (goal ≥ 0.95) "
        "| raw TTFT p50 / p95 | responses TTFT p50 / p95 | overhead p50 / p95 (goal p50 ≤ 20 ms) "
        "| responses: request → response.created / → engine p50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in levels:
        r50, r95, o50, o95 = raw.ttft(c, 0.5), raw.ttft(c, 0.95), ours.ttft(c, 0.5), ours.ttft(c, 0.95)
        lines.append(
            f"| {c} | {raw.rate(c):.1f} | {ours.rate(c):.1f} | {ours.rate(c) / raw.rate(c):.2f} "
            f"| {r50:.0f} / {r95:.0f} ms | {o50:.0f} / {o95:.0f} ms | {o50 - r50:+.0f} / {o95 - r95:+.0f} ms "
            f"| {ms(ours.created_ms(c))} / {ms(ours.to_engine_ms(c))} |"
        )
    return "\n".join(lines)


def chain_table(turns: int, chains: list[Chain]) -> str:
    warm = statistics.median(ch.last.ttft for ch in chains)
    cold = statistics.median(ch.cold.ttft for ch in chains)
    raw_warm = statistics.median(ch.raw_last.ttft for ch in chains)
    last = chains[-1]
    lines = [
        f"| turn {turns} of a previous_response_id chain | prompt tokens | reused (cached) "
        "| TTFT (median) | vs no reuse (goal ≤ 0.05) |",
        "|---|---|---|---|---|",
        f"| assistd responses (KV reuse) | {last.last.prompt_tokens} | {last.last.cached_tokens} "
        f"| {warm * 1000:.0f} ms | **{warm / cold:.3f}** |",
        f"| raw engine, same prompt, `cache_prompt: false` | {last.cold.prompt_tokens} "
        f"| {last.cold.cached_tokens} | {cold * 1000:.0f} ms | 1 |",
        f"| raw engine, a chain of its own (KV reuse), turns interleaved | {last.raw_last.prompt_tokens} "
        f"| {last.raw_last.cached_tokens} | {raw_warm * 1000:.0f} ms | {raw_warm / cold:.3f} |",
    ]
    return "\n".join(lines)


def decode_ms(timed: list[Timed]) -> float:
    """p50 time per token after the first text (to the last text: the reply's end events apart)."""
    return percentile([(t.total - t.tail - t.ttft) / max(t.tokens - 1, 1) for t in timed], 0.5) * 1000


def median_ms(values: list[float]) -> float | None:
    return statistics.median(values) * 1000 if values else None


def goals(levels: list[int], raw: RawSide, ours: ResponsesSide, turns: int, chains: list[Chain]) -> list[str]:
    out = []
    for c in levels:
        ratio = ours.rate(c) / raw.rate(c)
        out.append(
            f"agg tok/s ratio at c={c}: {ratio:.3f} (goal >= 0.95: {'met' if ratio >= 0.95 else 'MISSED'})"
        )
    for c in levels:
        out.append(
            f"  at c={c}, p50 time per token after the first: assistd {decode_ms(ours.timed[c]):.1f} ms, raw "
            f"{decode_ms(raw.timed[c]):.1f} ms; from the last text to the end of the reply: assistd "
            f"{ours.tail_ms(c):.0f} ms, raw {raw.tail_ms(c):.0f} ms"
        )
    for c in levels:
        d = ours.ttft(c, 0.5) - raw.ttft(c, 0.5)
        goal = f" (goal <= 20 ms: {'met' if d <= 20 else 'MISSED'})" if c == min(levels) else ""
        out.append(
            f"TTFT p50 overhead at c={c}: {d:+.0f} ms{goal}; assistd p50: request -> response.created "
            f"{ms(ours.created_ms(c))}, -> its engine request {ms(ours.to_engine_ms(c))}, -> first delta "
            f"{ours.ttft(c, 0.5):.0f} ms (raw TTFT p50 {raw.ttft(c, 0.5):.0f} ms)"
        )
    if chains:
        ratio = statistics.median(ch.last.ttft for ch in chains) / statistics.median(
            ch.cold.ttft for ch in chains
        )
        per = ", ".join(f"{ch.last.ttft / ch.cold.ttft:.3f}" for ch in chains)
        out.append(
            f"turn {turns} TTFT vs no reuse: {ratio:.3f} (each chain: {per}) "
            f"(goal <= 0.05: {'met' if ratio <= 0.05 else 'MISSED'})"
        )
        later = [t for ch in chains for t in ch.ours[1:]]
        ours_ttft = statistics.median(t.ttft for t in later) * 1000
        raw_ttft = statistics.median(t.ttft for ch in chains for t in ch.raw[1:]) * 1000
        out.append(
            f"turns 2-{turns} of the chains, TTFT p50: assistd {ours_ttft:.0f} ms (request -> "
            f"response.created {median_ms([t.created for t in later]):.0f} ms, -> its engine request "
            f"{ms(median_ms([x for ch in chains for x in ch.to_engine]))}), raw chain {raw_ttft:.0f} ms: "
            f"{ours_ttft - raw_ttft:+.0f} ms"
        )
    return out


def main() -> int:
    import xllamacpp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,16", help="concurrent requests, comma-separated")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--turns", type=int, default=20, help="turns of the previous_response_id chain")
    parser.add_argument("--chains", type=int, default=3, help="chains measured (0: skip part 2)")
    parser.add_argument("--parallel", type=int, default=16, help="slots of the engine process")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context of each slot")
    parser.add_argument(
        "--n-threads", type=int, default=None, help="engine CPU threads (default llama.cpp's)"
    )
    parser.add_argument(
        "--server-args", default="", help="extra `assistd serve` flags, e.g. '--worker-runs 16'"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 16 tokens, a 5-turn chain, 1 chain"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.tokens, args.turns, args.chains = 1, 16, 5, 1
    levels = [int(x) for x in args.levels.split(",")]
    from assistd.llm.embedded import default_threads

    threads = str(args.n_threads or default_threads())
    began = time.perf_counter()
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; model {MODEL_PATH.name}, "
        f"xllamacpp {getattr(xllamacpp, '__version__', '?')}, engine --parallel {args.parallel}, "
        f"n_ctx {args.n_ctx}/slot, threads {threads}; assistd serve {args.server_args or 'defaults'}; "
        f"at start {load()}",
        flush=True,
    )
    renderer = Renderer()
    engine = EngineProcess(args.parallel, args.n_ctx, args.n_threads)
    chains: list[Chain] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        try:
            server_args = shlex.split(args.server_args)
            server = assistd_server(Path(tmp) / "remote", url=engine.url, args=server_args)
            client = sdk_client(server)
            check_prompts(engine, renderer, client, args.tokens)
            raw, ours = RawSide(engine, renderer, args.tokens), ResponsesSide(client, args.tokens)
            sides: list[Side] = [raw, ours]
            for side in sides:  # warm-up: pools and caches primed
                side.measure(1)
                side.rates.clear()
                side.ttfts.clear()
                side.tokens.clear()
            ours.timed.clear()
            raw.timed.clear()
            for r in range(args.rounds):
                for c in levels:
                    for side in sides if r % 2 == 0 else sides[::-1]:
                        side.measure(c)
                print(f"round {r + 1}/{args.rounds} done; {load()}", flush=True)
            for i in range(args.chains):
                chains.append(run_chain(engine, renderer, client, args.turns))
                ch = chains[-1]
                print(
                    f"chain {i + 1}/{args.chains}: turn {args.turns} TTFT {ch.last.ttft * 1000:.0f} ms "
                    f"({ch.last.prompt_tokens} prompt tokens, {ch.last.cached_tokens} cached; raw prompt "
                    f"{ch.raw_prompt_tokens} tokens), no reuse {ch.cold.ttft * 1000:.0f} ms, raw chain "
                    f"{ch.raw_last.ttft * 1000:.0f} ms ({ch.raw_last.cached_tokens} cached); {load()}",
                    flush=True,
                )
            times = engine_request_times(server.log())  # when assistd's engine requests left
            ours.match_log(times)
            for ch in chains:
                found = [time_to_engine(t, times) for t in ch.ours[1:]]
                ch.to_engine = [x for x in found if x is not None]
        finally:
            if server is not None:
                server.stop()
            engine.stop()
    for side in sides:
        for c in levels:
            short = [n for n in side.tokens[c] if n < args.tokens]
            if short:
                print(f"note: {side.label}, c={c}: {len(short)} replies ended before {args.tokens} tokens")
    print(
        f"\n{args.tokens} tokens per request, temperature 0, median of {args.rounds} rounds; "
        f"{cpu_model()}, {os.cpu_count()} cores; at the end {load()}; "
        f"{time.perf_counter() - began:.0f} s in all\n"
    )
    print(overhead_table(levels, raw, ours))
    if chains:
        print()
        print(chain_table(args.turns, chains))
    print()
    for line in goals(levels, raw, ours, args.turns, chains):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
