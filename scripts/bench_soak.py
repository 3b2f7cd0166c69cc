"""Soak benchmark: does the server's memory stay bounded over many runs?

N runs (default 500), each on a new thread with a ~1.2k-token prompt (a shared document, then the thread's
own question), through a real `assistd serve` process (official SDK, streaming, like bench_runs.py). Prints
the server's RSS every --every runs, after 20 runs and after N, and its peak, and checks the goal: RSS after
N <= 1.5 x RSS after 20, and the peak never above model file + KV-cache cap + 1 GB. Exit status 1 when the
goal is missed. Each run leaves a ~26 MB KV state in the cache (SmolLM2, ~1.2k tokens), so RSS grows until
the cache reaches its cap (~40 runs at the default 1 GiB) and must stay flat after that.

Usage: .venv/bin/python scripts/bench_soak.py [--n 500] [--kv-cache-bytes 1073741824] [--tokens 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from assistd.config import DEFAULT_MODEL_NAME, Settings
from bench_runs import FILLER, MODEL_PATH, ROOT, SYSTEM, assistd_run, free_port

KEY = "sk-soak"
# 28 x 41 tokens + the question and the chat template: ~1.2k prompt tokens. Every thread opens with the same
# document (as threads of one assistant on one knowledge base do) and asks its own question: each run saves
# its own ~1.2k-token state, as with unrelated prompts, but only the question is new to the model, so that
# 500 runs fit in minutes on a small CPU.
DOCUMENT = FILLER * 28
MB = 1024**2


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


class Server:
    """`assistd serve` as its own process, so that its RSS is the server's alone."""

    def __init__(self, data_dir: Path, kv_cache_bytes: int) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ASSISTD_API_KEYS": f"{KEY}=soak",
        }
        args = ["--port", str(self.port), "--data-dir", str(data_dir), "--models-dir", str(ROOT / "models")]
        args += ["--kv-cache-bytes", str(kv_cache_bytes), "--log-level", "warning"]
        self.log = (data_dir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistd", "serve", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir,
        )
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early, see {data_dir / 'server.log'}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready")
        self.client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=600)

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def peak(self) -> int:
        return rss_bytes(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def soak(server: Server, n: int, tokens: int, every: int) -> tuple[int, int, int, list[int]]:
    """Runs n runs on new threads; returns (RSS after 20, RSS after n, highest RSS seen, prompt sizes)."""
    client = server.client
    assistant = client.beta.assistants.create(model=DEFAULT_MODEL_NAME, instructions=SYSTEM)
    after_20, highest, prompts = 0, 0, []
    for i in range(1, n + 1):
        text = f"{DOCUMENT}\nQuestion {i}: in one sentence, what is this text about?"
        thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
        assistd_run(client, assistant.id, thread.id, tokens)
        run = client.beta.threads.runs.list(thread.id, limit=1).data[0]
        if run.status not in ("completed", "incomplete"):  # incomplete: it used its max tokens
            raise RuntimeError(f"run {i} ended {run.status}: {run.last_error}")
        prompts.append(run.usage.prompt_tokens)
        rss = server.rss()
        highest = max(highest, rss)
        if i == 20:
            after_20 = rss
        if i % every == 0 or i in (1, 20, n):
            print(f"   run {i:5d}: RSS {rss / MB:8.0f} MB", flush=True)
    return after_20, server.rss(), highest, prompts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="runs, each on a new thread (at least 20)")
    parser.add_argument("--kv-cache-bytes", type=int, default=Settings.model_fields["kv_cache_bytes"].default)
    parser.add_argument("--tokens", type=int, default=8, help="max completion tokens of each run")
    parser.add_argument("--every", type=int, default=50, help="print the RSS every this many runs")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's notice that Assistants is deprecated
    if args.n < 20:
        parser.error("--n must be at least 20")
    model_bytes = MODEL_PATH.stat().st_size
    ceiling = model_bytes + args.kv_cache_bytes + 1024**3
    print(
        f"soak: {args.n} runs on new threads, model {MODEL_PATH.name} ({model_bytes / MB:.0f} MB), "
        f"KV cache cap {args.kv_cache_bytes / MB:.0f} MB, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), args.kv_cache_bytes)
        try:
            start = server.rss()
            print(f"   idle:      RSS {start / MB:8.0f} MB", flush=True)
            after_20, after_n, highest, prompts = soak(server, args.n, args.tokens, args.every)
            peak = server.peak()
        finally:
            server.stop()
    ratio = after_n / after_20
    print(f"\nprompt tokens per run: {min(prompts)}-{max(prompts)} (mean {sum(prompts) / len(prompts):.0f})")
    print(f"RSS after 20 runs:        {after_20 / MB:8.0f} MB")
    print(f"RSS after {args.n} runs:{'':<{max(0, 7 - len(str(args.n)))}}{after_n / MB:9.0f} MB")
    print(f"ratio after {args.n} / after 20: {ratio:.2f} (goal <= 1.5)")
    print(
        f"peak RSS {max(peak, highest) / MB:.0f} MB; ceiling model + cache cap + 1 GB = {ceiling / MB:.0f} MB"
    )
    ok = ratio <= 1.5 and max(peak, highest) <= ceiling
    print(f"goal {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
