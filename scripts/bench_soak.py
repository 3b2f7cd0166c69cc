"""Soak benchmark: does the server's memory stay bounded over many runs on the embedded llama.cpp engine?

N runs (default 120), each on a new thread with a ~1.2k-token prompt, through a real `assistd serve` process
(official SDK, streaming). The default model runs on the embedded engine (xllamacpp, in the server process),
so the server's RSS is:

- the model file (mapped, ~94 MB for SmolLM2-135M Q4_1);
- the slots' KV cells, allocated and cleared at load (resident from the first run): slots x n_ctx tokens
  x (per token: layers x KV heads x (key + value head size) x 2 bytes, f16), computed here from the
  GGUF's metadata (SmolLM2: 22.5 KiB a token, so 4 slots x 8192 tokens = 720 MiB);
- llama.cpp's host-memory prompt cache (--kv-cache-bytes, cache_ram_mib; 1 GiB default), which fills as
  slots are taken over by unrelated prompts: each takeover saves the slot's state (~1.2k tokens x 22.5 KiB
  = ~27 MB here) and llama.cpp drops the oldest states beyond the cap;
- Python, the API, the SDK's and the engine's buffers.

Checks (exit status 1 when one fails):
1. ceiling: the peak RSS never above model file + slots' KV cells + cache cap + 1 GB;
2. flat once full: RSS after N <= 1.1 x RSS at the run by which the cache must be full (F = slots + cap /
   the state of one run, printed), with N >= 2 F so that the flat part is at least as long as the filling;
3. the cache was filled (see below).
The former goal "RSS after N <= 1.5 x RSS after 20" (issue 10) is printed but no longer checked: at run 20
the prompt cache is half full (it fills over ~40 runs at 1 GiB), so that ratio measures how the cache cap
compares to the model and slots, not whether memory is bounded; a cap of 2 GiB would "fail" it with no leak.

Two prompt shapes (--prompt). llama.cpp copies a slot's state into the prompt cache when a task starts on
another slot while this one is idle (cache_idle_slots, on by default; "saving idle slot to prompt cache"),
or when a prompt takes the slot over and would lose more than half of it; a state the cache holds already
is not copied again, and the oldest states are dropped beyond the cap. So:
- unrelated (default): each thread's prompt opens with its own question, then a document: no slot shares
  more than the chat template's first tokens with it, so every run lands on the least recently used slot
  and the previous run's slot, now idle, is copied into the cache (~27 MB a run from run 2; F counts
  from the number of slots, the latest the cache can be full). This fills the cache, but every run
  evaluates its whole prompt: the cache fills at the engine's prompt speed whatever the prompt size,
  10-20 s a run on a busy 2-core box.
- shared: each thread opens with the same document and asks its own question last: every run reuses the
  slot that holds the document (only the question is new), that slot is never idle when a task starts,
  so nothing is copied and the cache stays empty (check 3 then fails by design). Hundreds of runs in
  minutes: it soaks our own code (API, run loop, event bus, database, HTTP client to the engine) with the
  engine's memory held constant.
Check 3 makes sure a soak did fill the cache (RSS at F at least 80% of the cap above RSS after the first
run): a soak that never fills the cache proves nothing about its cap. --kv-cache-bytes 0 turns the cache
off and shows its share.

Usage: .venv/bin/python scripts/bench_soak.py [--n 120] [--prompt unrelated|shared]
       [--kv-cache-bytes 1073741824] [--parallel N] [--tokens 8] [--every 25]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from assistd.config import ModelEntry, Settings
from assistd.llm.embedded import default_slots
from bench_runs import FILLER, SYSTEM
from bench_support import DEFAULT_MODEL_NAME, MODEL_PATH, assistd_run, assistd_server, load, sdk_client

# 28 x 41 tokens + the question and the chat template: ~1.2k prompt tokens.
DOCUMENT = FILLER * 28
MB = 1024**2
FLAT = 1.1  # RSS after N over RSS when the cache is full
FILLED = 0.8  # what the cache must have grown by F, as a share of its cap


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def kv_bytes_per_token(model: Path) -> int:
    """f16 K and V of one token in every layer, from the GGUF's metadata (llama.cpp's default cache type)."""
    import llama_cpp

    meta = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False).metadata
    arch = meta["general.architecture"]
    layers = int(meta[f"{arch}.block_count"])
    heads = int(meta[f"{arch}.attention.head_count"])
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    head = int(meta[f"{arch}.embedding_length"]) // heads
    key = int(meta.get(f"{arch}.attention.key_length", head))
    value = int(meta.get(f"{arch}.attention.value_length", head))
    return layers * kv_heads * (key + value) * 2


def prompt(shape: str, i: int) -> str:
    if shape == "shared":
        return f"{DOCUMENT}\nQuestion {i}: in one sentence, what is this text about?"
    return f"Question {i}: in one sentence, what is the text below about?\n\n{DOCUMENT}"


def soak(client, pid: int, n: int, shape: str, tokens: int, every: int) -> tuple[list[int], list[int]]:
    """Runs n runs on new threads; returns the RSS after each run and the prompt sizes."""
    assistant = client.beta.assistants.create(model=DEFAULT_MODEL_NAME, instructions=SYSTEM)
    rss, prompts = [], []
    for i in range(1, n + 1):
        text = prompt(shape, i)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
        timed = assistd_run(client, assistant.id, thread.id, tokens)  # raises unless completed/incomplete
        prompts.append(timed.prompt_tokens)
        rss.append(rss_bytes(pid))
        if i % every == 0 or i in (1, 20, n):
            print(f"   run {i:5d}: RSS {rss[-1] / MB:8.0f} MB  ({load()})", flush=True)
    return rss, prompts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="runs, each on a new thread")
    parser.add_argument("--prompt", choices=("unrelated", "shared"), default="unrelated", help="see above")
    parser.add_argument("--kv-cache-bytes", type=int, default=Settings.model_fields["kv_cache_bytes"].default)
    parser.add_argument("--parallel", type=int, default=None, help="engine slots (default: the server's)")
    parser.add_argument("--tokens", type=int, default=8, help="max completion tokens of each run")
    parser.add_argument("--every", type=int, default=25, help="print the RSS every this many runs")
    args = parser.parse_args()
    n_ctx = Settings.model_fields["n_ctx"].default
    slots = args.parallel or default_slots(ModelEntry(name=DEFAULT_MODEL_NAME, path=MODEL_PATH))
    model_bytes = MODEL_PATH.stat().st_size
    per_token = kv_bytes_per_token(MODEL_PATH)
    kv_cells = slots * n_ctx * per_token
    ceiling = model_bytes + kv_cells + args.kv_cache_bytes + 1024**3
    print(
        f"soak: {args.n} runs on new threads, {args.prompt} prompts, "
        f"model {MODEL_PATH.name} ({model_bytes / MB:.0f} MB), "
        f"{slots} slots x {n_ctx} tokens x {per_token / 1024:.1f} KiB = {kv_cells / MB:.0f} MB of KV cells, "
        f"prompt cache cap {args.kv_cache_bytes / MB:.0f} MB; {load()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        serve_args = ["--kv-cache-bytes", str(args.kv_cache_bytes), "--parallel", str(slots)]
        server = assistd_server(Path(tmp) / "data", args=[*serve_args, "--log-level", "warning"])
        try:
            idle = rss_bytes(server.proc.pid)
            print(f"   idle (model not loaded yet): RSS {idle / MB:.0f} MB", flush=True)
            client = sdk_client(server)
            rss, prompts = soak(client, server.proc.pid, args.n, args.prompt, args.tokens, args.every)
            peak = max(rss_bytes(server.proc.pid, "VmHWM"), *rss)
        finally:
            server.stop()
    mean_prompt = sum(prompts) / len(prompts)
    state = mean_prompt * per_token  # what the slot of one run leaves in the cache once idle
    full = min(args.n, slots + math.ceil(args.kv_cache_bytes / state))
    after_20, after_n, at_full = rss[min(20, args.n) - 1], rss[-1], rss[full - 1]
    print(f"\nprompt tokens per run: {min(prompts)}-{max(prompts)} (mean {mean_prompt:.0f})")
    print(f"one run's saved state: {state / MB:.1f} MB; cache full by run F = {full}")
    print(f"RSS after 1 run (model and KV cells loaded): {rss[0] / MB:8.0f} MB")
    early = min(20, args.n)
    print(f"RSS after {early} runs:{'':<{26 - len(str(early))}}{after_20 / MB:8.0f} MB")
    print(f"RSS after F = {full} runs:{'':<{24 - len(str(full))}}{at_full / MB:8.0f} MB")
    print(f"RSS after N = {args.n} runs:{'':<{24 - len(str(args.n))}}{after_n / MB:8.0f} MB")
    print(f"after N / after {early}: {after_n / after_20:.2f} (issue 10's goal <= 1.5, not checked)")
    flat = after_n / at_full
    long_enough = args.n >= 2 * full
    print(f"after N / after F: {flat:.3f} (goal <= {FLAT}{'' if long_enough else '; N < 2 F: not checked'})")
    print(f"peak RSS {peak / MB:.0f} MB; ceiling model + KV cells + cache cap + 1 GB = {ceiling / MB:.0f} MB")
    print(load())
    filled = at_full - rss[0]
    cache_ok = args.kv_cache_bytes == 0 or filled >= FILLED * args.kv_cache_bytes
    goal = f"goal >= {FILLED:.0%} of the cache cap" if args.kv_cache_bytes else "no cache: not checked"
    print(f"RSS at F - RSS after 1 run: {filled / MB:.0f} MB ({goal}: the soak filled the cache)")
    ok = peak <= ceiling and long_enough and flat <= FLAT and cache_ok
    print(f"goal {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
