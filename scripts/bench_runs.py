"""Benchmark: an assistd run vs. raw llama-cpp-python, in one process, on the default model.

1. The same prompt and max tokens through `Llama.create_chat_completion` and through an assistd run
   (HTTP + official SDK streaming): total time, time per token, time to first token; the ratio is the
   server's overhead.
2. Turn 20 of a long thread (~3.5k tokens of history) after other threads ran in between: time to first
   token (prompt processing) with assistd's KV-state cache and without it, next to raw llama-cpp-python
   with and without its RAM cache.

Usage: .venv/bin/python scripts/bench_runs.py [--tokens 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import llama_cpp  # noqa: E402
import openai  # noqa: E402
import uvicorn  # noqa: E402

from assistd.app import create_app  # noqa: E402
from assistd.config import DEFAULT_MODEL_FILE, DEFAULT_MODEL_NAME, Settings  # noqa: E402

MODEL_PATH = ROOT / "models" / DEFAULT_MODEL_FILE
QUESTION = "Explain in a few sentences why the sky is blue."
SYSTEM = "You are a helpful assistant."
FILLER = (
    "Here is some background on sailing ships, their rigging, their crews and the routes they took "
    "across the oceans in the age of sail, with details on navigation by the stars and dead reckoning. "
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class InProcessServer:
    def __init__(self, data_dir: Path, **settings: object) -> None:
        self.port = free_port()
        app = create_app(Settings(data_dir=data_dir, port=self.port, models_dir=ROOT / "models", **settings))
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.port}/v1", api_key="bench", max_retries=0
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def raw_chat(llm: llama_cpp.Llama, messages: list[dict], tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first, count = None, 0
    for chunk in llm.create_chat_completion(
        messages=messages, max_tokens=tokens, temperature=0.0, stream=True
    ):
        if chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter()
            count += 1
    end = time.perf_counter()
    return end - start, (first or end) - start, count


def assistd_run(
    client: openai.OpenAI, assistant_id: str, thread_id: str, tokens: int
) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = None
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, max_completion_tokens=tokens, temperature=0.0
    ) as stream:
        for event in stream:
            if event.event == "thread.message.delta" and first is None:
                first = time.perf_counter()
        run = stream.get_final_run()
    end = time.perf_counter()
    return end - start, (first or end) - start, run.usage.completion_tokens


def overhead(server: InProcessServer, llm: llama_cpp.Llama, tokens: int, repeat: int) -> None:
    client = server.client
    assistant = client.beta.assistants.create(model=DEFAULT_MODEL_NAME, instructions=SYSTEM)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    raw_chat(llm, messages, tokens)  # warm-up
    warm = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    assistd_run(client, assistant.id, warm.id, tokens)
    raw, ours = [], []
    for i in range(repeat):  # a new question each time: neither side may reuse more than the system prompt
        question = f"Question {i + 1}. {QUESTION}"
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        raw.append(raw_chat(llm, messages, tokens))
        thread = client.beta.threads.create(messages=[{"role": "user", "content": question}])
        ours.append(assistd_run(client, assistant.id, thread.id, tokens))
    r_total = statistics.median(t for t, _, _ in raw)
    o_total = statistics.median(t for t, _, _ in ours)
    r_tok = statistics.median(t / max(n, 1) for t, _, n in raw)
    o_tok = statistics.median(t / max(n, 1) for t, _, n in ours)
    r_ttft = statistics.median(f for _, f, _ in raw)
    o_ttft = statistics.median(f for _, f, _ in ours)
    print(f"\n1. one answer, max {tokens} tokens, median of {repeat} (temperature 0)")
    print(f"   {'':28}{'raw llama-cpp':>16}{'assistd run':>16}{'ratio':>8}")
    print(f"   {'total time (s)':28}{r_total:16.3f}{o_total:16.3f}{o_total / r_total:8.2f}")
    print(f"   {'time per token (ms)':28}{r_tok * 1000:16.1f}{o_tok * 1000:16.1f}{o_tok / r_tok:8.2f}")
    print(
        f"   {'time to first token (ms)':28}{r_ttft * 1000:16.1f}{o_ttft * 1000:16.1f}{o_ttft / r_ttft:8.2f}"
    )


def long_thread_turn(server: InProcessServer, turns: int = 20, others: int = 3) -> tuple[float, int]:
    """Runs turns 1..N-1 of a long thread (with other threads in between), then measures turn N."""
    client = server.client
    assistant = client.beta.assistants.create(model=DEFAULT_MODEL_NAME, instructions=SYSTEM)
    thread = client.beta.threads.create()
    distractors = [
        client.beta.assistants.create(model=DEFAULT_MODEL_NAME, instructions=f"Agent {i}.")
        for i in range(others)
    ]
    for turn in range(1, turns):
        client.beta.threads.messages.create(thread.id, role="user", content=f"Turn {turn}. {FILLER * 3}")
        assistd_run(client, assistant.id, thread.id, 16)
    for i, other in enumerate(distractors):  # other threads use the model in between
        t = client.beta.threads.create(
            messages=[{"role": "user", "content": f"Unrelated question {i}. {FILLER}"}]
        )
        assistd_run(client, other.id, t.id, 16)
    client.beta.threads.messages.create(
        thread.id, role="user", content=f"Turn {turns}. Summarise the thread."
    )
    _, ttft, _ = assistd_run(client, assistant.id, thread.id, 8)
    run = client.beta.threads.runs.list(thread.id, limit=1).data[0]
    return ttft, run.usage.prompt_tokens


def raw_long_turn(use_cache: bool, turns: int = 20, others: int = 3) -> float:
    llm = llama_cpp.Llama(model_path=str(MODEL_PATH), n_ctx=8192, verbose=False)
    if use_cache:
        llm.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=2 << 30))
    history = [{"role": "system", "content": SYSTEM}]
    for turn in range(1, turns):
        history.append({"role": "user", "content": f"Turn {turn}. {FILLER * 3}"})
        out = llm.create_chat_completion(messages=history, max_tokens=16, temperature=0.0)
        history.append({"role": "assistant", "content": out["choices"][0]["message"]["content"]})
    for i in range(others):
        llm.create_chat_completion(
            messages=[{"role": "user", "content": f"Unrelated question {i}. {FILLER}"}],
            max_tokens=16,
            temperature=0.0,
        )
    history.append({"role": "user", "content": f"Turn {turns}. Summarise the thread."})
    _, ttft, _ = raw_chat(llm, history, 8)
    return ttft


def main() -> int:
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, model {MODEL_PATH.name}, llama-cpp-python {llama_cpp.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        server = InProcessServer(Path(tmp) / "cached")
        llm = llama_cpp.Llama(model_path=str(MODEL_PATH), n_ctx=8192, verbose=False)
        overhead(server, llm, args.tokens, args.repeat)
        del llm
        cached_ttft, prompt_tokens = long_thread_turn(server, args.turns)
        server.stop()
        plain = InProcessServer(Path(tmp) / "plain", kv_cache_bytes=0)
        plain_ttft, _ = long_thread_turn(plain, args.turns)
        plain.stop()
    raw_cached, raw_plain = raw_long_turn(True, args.turns), raw_long_turn(False, args.turns)
    print(
        f"\n2. turn {args.turns} of a long thread ({prompt_tokens} prompt tokens), "
        "3 other threads ran in between"
    )
    print(f"   {'time to first token (s)':28}{'with KV reuse':>16}{'without':>16}")
    print(f"   {'assistd run':28}{cached_ttft:16.3f}{plain_ttft:16.3f}")
    print(f"   {'raw llama-cpp-python':28}{raw_cached:16.3f}{raw_plain:16.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
