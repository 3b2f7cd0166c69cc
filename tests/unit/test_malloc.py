"""Evicted KV states give their memory back: with the cache's pattern (large states saved by several run
threads, evicted least recently used first) the server's RSS grows by what the cache holds, not by the
holes evictions leave in each thread's heap."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistd.config import DEFAULT_MODEL_FILE

MODEL = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_FILE

# In a fresh process: malloc's settings are per process. The states are plain bytes of a KV state's size,
# saved on 8 threads in turn into an LRU of 8; the backend is loaded first, as in the server.
SCRIPT = """
import collections, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from assistd.config import ModelEntry
from assistd.llm.llama_cpp_backend import LlamaCppBackend

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

MB = 1 << 20
backend = LlamaCppBackend(ModelEntry(name="m", path=Path(sys.argv[1]), n_ctx=512, n_threads=1), 256 * MB)
cache = collections.OrderedDict()
threads = [ThreadPoolExecutor(1) for _ in range(8)]

def save(i):
    raw = bytearray(27 * MB)  # save_state: a buffer of the state's size, then a compact copy
    raw[:: 4096] = b"x" * len(raw[:: 4096])
    cache[i] = bytes(raw)
    while len(cache) > 8:
        cache.popitem(last=False)

base, peak = rss(), 0
for i in range(120):
    threads[i % 8].submit(save, i).result()
    peak = max(peak, rss())
print(sum(map(len, cache.values())), peak - base)
"""


@pytest.mark.model
def test_rss_grows_by_what_the_saved_states_hold_not_by_heap_holes():
    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing: run `make install`")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(MODEL)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    live, growth = map(int, out.split())
    assert live == 8 * 27 * 1024**2
    assert growth <= live + 64 * 1024**2, f"RSS grew {growth >> 20} MB for {live >> 20} MB of live states"
