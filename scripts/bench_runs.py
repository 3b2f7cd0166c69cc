"""Benchmark: one assistd run at a time vs llama.cpp's server engine driven raw, and KV reuse across turns.

1. The same prompt and max tokens (a new question each time, temperature 0), interleaved, median of
   --repeat: raw = the engine's own streamed /completion on an `assistd engine` process, with the exact
   prompt assistd renders and the body its backend sends; assistd = an SDK-streamed run on an `assistd
   serve` process whose model is served by that same engine (models file `url`), and on the default path
   (the engine embedded in the server). Total time, time per token, time to first token; the ratio is
   assistd's overhead (goal <= 1.03).
2. Turn 20 of a long thread (~2.9k tokens of history) after 3 other threads ran in between: time to first
   token with KV reuse (default settings: llama.cpp's per-slot prompt cache and its host-memory prompt cache,
   --kv-cache-bytes, which also takes idle slots' states; with --parallel 1 the other threads take the one
   slot, so the thread's state can only come back from the host cache) and without (--parallel 1
   --kv-cache-bytes 0; and the raw engine with cache_prompt off on the same prompt). Goal: with reuse
   <= 0.05 of without.

Usage: .venv/bin/python scripts/bench_runs.py [--tokens 64] [--repeat 5] [--turns 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
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

QUESTION = "Explain in a few sentences why the sky is blue."
SYSTEM = "You are a helpful assistant."
FILLER = (
    "Here is some background on sailing ships, their rigging, their crews and the routes they took "
    "across the oceans in the age of sail, with details on navigation by the stars and dead reckoning. "
)


def overhead(
    engine: EngineProcess, renderer: Renderer, servers: dict[str, Any], tokens: int, repeat: int
) -> None:
    assistants = {
        label: (client, client.beta.assistants.create(model=model, instructions=SYSTEM))
        for label, (client, model) in servers.items()
    }

    def ours(label: str, text: str) -> Timed:
        client, assistant = assistants[label]
        thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
        return assistd_run(client, assistant.id, thread.id, tokens)

    def raw(text: str) -> Timed:
        prompt = renderer.prompt(SYSTEM, [{"role": "user", "content": text}])
        return raw_completion(engine.client, prompt, tokens, stop=renderer.plain_stop)

    raw(QUESTION)  # warm-up: engines loaded, pools primed
    for label in assistants:
        ours(label, QUESTION)
    results: dict[str, list[Timed]] = {"raw": [], **{label: [] for label in assistants}}
    for i in range(repeat):  # a new question each time: nothing reused beyond the system prompt
        sides = ["raw", *assistants]
        for side in sides if i % 2 == 0 else sides[::-1]:
            text = f"Question {i + 1:03d} ({side}). {QUESTION}"
            results[side].append(raw(text) if side == "raw" else ours(side, text))
    base = results["raw"]
    print(f"\n1. one answer, max {tokens} tokens, median of {repeat} (temperature 0); {load()}")
    header = f"   {'':28}{'raw engine':>14}"
    for label in assistants:
        header += f"{label:>24}{'ratio':>7}"
    print(header)
    rows = [
        ("total time (s)", lambda t: t.total, 1, 3),
        ("time per token (ms)", lambda t: t.total / max(t.tokens, 1), 1000, 1),
        ("time to first token (ms)", lambda t: t.ttft, 1000, 1),
    ]
    for name, metric, scale, digits in rows:
        r = statistics.median(metric(t) for t in base)
        line = f"   {name:28}{r * scale:14.{digits}f}"
        for label in assistants:
            o = statistics.median(metric(t) for t in results[label])
            line += f"{o * scale:24.{digits}f}{o / r:7.2f}"
        print(line)
    tokens_seen = {side: sorted({t.tokens for t in ts}) for side, ts in results.items()}
    print(f"   completion tokens per reply: {tokens_seen}")


def long_thread_turn(
    client: Any, model: str, turns: int, others: int = 3
) -> tuple[Timed, list[dict[str, str]]]:
    """Runs turns 1..N-1 of a long thread, then other threads, then measures turn N; (its timing, the
    thread's messages as the prompt shows them)."""
    assistant = client.beta.assistants.create(model=model, instructions=SYSTEM)
    thread = client.beta.threads.create()
    for turn in range(1, turns):
        client.beta.threads.messages.create(thread.id, role="user", content=f"Turn {turn}. {FILLER * 3}")
        assistd_run(client, assistant.id, thread.id, 16)
    for i in range(others):  # other threads (other assistants) use the model in between
        other = client.beta.assistants.create(model=model, instructions=f"Agent {i}.")
        t = client.beta.threads.create(
            messages=[{"role": "user", "content": f"Unrelated question {i}. {FILLER}"}]
        )
        assistd_run(client, other.id, t.id, 16)
    client.beta.threads.messages.create(
        thread.id, role="user", content=f"Turn {turns}. Summarise the thread."
    )
    timed = assistd_run(client, assistant.id, thread.id, 8)
    messages = client.beta.threads.messages.list(thread.id, order="asc", limit=100).data
    shown = [
        {"role": m.role, "content": "".join(c.text.value for c in m.content if c.type == "text")}
        for m in messages
    ]
    return timed, shown[:-1]  # without the reply of turn N


def kv_reuse(tmp: Path, engine: EngineProcess, renderer: Renderer, default_server: Any, turns: int) -> None:
    cases: list[tuple[str, Timed]] = []
    timed, shown = long_thread_turn(sdk_client(default_server), DEFAULT_MODEL_NAME, turns)
    cases.append(("assistd, default settings", timed))
    for label, args in (
        ("assistd --parallel 1 (host cache)", ["--parallel", "1"]),
        ("assistd --parallel 1, no cache", ["--parallel", "1", "--kv-cache-bytes", "0"]),
    ):
        server = assistd_server(tmp / label.split(",")[-1].strip().replace(" ", "-"), args=args)
        try:
            cases.append((label, long_thread_turn(sdk_client(server), DEFAULT_MODEL_NAME, turns)[0]))
        finally:
            server.stop()
    prompt = renderer.prompt(SYSTEM, shown)
    cases.append(
        (
            "raw engine, cache_prompt off",
            raw_completion(engine.client, prompt, 8, cache_prompt=False, stop=renderer.plain_stop),
        )
    )
    print(
        f"\n2. turn {turns} of a long thread ({timed.prompt_tokens} prompt tokens; raw prompt "
        f"{renderer.count(prompt)} tokens), 3 other threads ran in between; {load()}"
    )
    print(f"   {'':36}{'time to first token (s)':>24}")
    for label, t in cases:
        print(f"   {label:36}{t.ttft:24.3f}")
    without = cases[2][1].ttft
    for label, t in cases[:2]:
        ratio = t.ttft / without
        met = "met" if ratio <= 0.05 else "MISSED"
        print(f"   {label}: {ratio:.3f} of the time without reuse (goal <= 0.05: {met})")


def main() -> int:
    import xllamacpp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--skip-reuse", action="store_true", help="only part 1")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, model {MODEL_PATH.name}, xllamacpp "
        f"{getattr(xllamacpp, '__version__', '?')}, default settings; {load()}",
        flush=True,
    )
    renderer = Renderer()
    from assistd.config import ModelEntry
    from assistd.llm.embedded import default_slots

    slots = default_slots(ModelEntry(name=DEFAULT_MODEL_NAME, path=MODEL_PATH))
    engine = EngineProcess(slots, 8192)  # the embedded engine's defaults, as its own process
    with tempfile.TemporaryDirectory() as tmp:
        started = []
        try:
            remote = assistd_server(Path(tmp) / "remote", url=engine.url)
            started.append(remote)
            embedded = assistd_server(Path(tmp) / "embedded")
            started.append(embedded)
            servers = {
                "assistd, engine by url": (sdk_client(remote), REMOTE_NAME),
                "assistd embedded": (sdk_client(embedded), DEFAULT_MODEL_NAME),
            }
            overhead(engine, renderer, servers, args.tokens, args.repeat)
            remote.stop()
            started.remove(remote)
            if not args.skip_reuse:
                kv_reuse(Path(tmp), engine, renderer, embedded, args.turns)
        finally:
            for server in started:
                server.stop()
            engine.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
