"""The KV-state cache holds no more than --kv-cache-bytes, counting everything its saved states hold (KV
bytes, logits, token ids), and keeps reusing turn N-1's state for turn N of a thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
from llama_cpp.llama import LlamaState  # noqa: E402

from assistd.config import DEFAULT_MODEL_FILE, DEFAULT_MODEL_NAME, ModelEntry  # noqa: E402
from assistd.llm.backend import GenerationParams  # noqa: E402
from assistd.llm.kv_cache import KVStateCache, common_prefix, footprint  # noqa: E402
from assistd.llm.llama_cpp_backend import LlamaCppBackend  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_FILE
MiB = 1024**2
FILLER = (
    "Here is some background on sailing ships, their rigging, their crews and the routes they took "
    "across the oceans in the age of sail, with details on navigation by the stars and dead reckoning. "
)


def state(n_tokens: int, kv_bytes: int, rows: int = 8, vocab: int = 1000, n_ctx: int = 64) -> LlamaState:
    ids = np.zeros(n_ctx, dtype=np.intc)
    ids[:n_tokens] = np.arange(n_tokens)
    return LlamaState(
        input_ids=ids,
        scores=np.ones((rows, vocab), dtype=np.single),
        n_tokens=n_tokens,
        llama_state=bytes(kv_bytes),
        llama_state_size=kv_bytes,
        seed=0,
    )


def held(cache) -> int:
    """Bytes the cache's states really hold, measured from the objects."""
    return sum(len(s.llama_state) + s.scores.nbytes + s.input_ids.nbytes for s in cache.cache_state.values())


# ---------------------------------------------------------------------------------------------------------
# The cache on its own


def test_an_entry_counts_kv_logits_and_token_ids_and_keeps_one_logits_row():
    cache = KVStateCache(capacity_bytes=10 * MiB)
    cache[(1, 2, 3)] = state(3, kv_bytes=1000, rows=8, vocab=1000)
    (kept,) = cache.cache_state.values()
    assert kept.scores.shape == (1, 1000)
    assert cache.cache_size == footprint(kept) == 1000 + 1000 * 4 + 64 * 4 == held(cache)


def test_least_recently_used_states_go_first_and_the_total_never_exceeds_the_cap():
    one = 100_000 + 1000 * 4 + 64 * 4  # KV bytes, one logits row, n_ctx token ids
    cache = KVStateCache(capacity_bytes=3 * one)
    for first in range(10, 60, 10):
        cache[(first, first + 1)] = state(2, 100_000)
        assert held(cache) == cache.cache_size <= 3 * one
        cache[(10, 11, 99)]  # a lookup keeps thread 10's state the most recently used
    assert set(cache.cache_state) == {(10, 11), (40, 41), (50, 51)}


def test_a_newer_turn_of_the_same_thread_supersedes_its_prefix():
    cache = KVStateCache(capacity_bytes=10 * MiB)
    cache[(1, 2, 3)] = state(3, 1000)
    cache[(7, 8)] = state(2, 1000)
    cache[(1, 2, 3, 4, 5)] = state(5, 1000)
    assert set(cache.cache_state) == {(7, 8), (1, 2, 3, 4, 5)}
    assert cache.cache_size == held(cache)


def test_lookup_returns_the_longest_shared_prefix_and_a_state_larger_than_the_cap_is_not_kept():
    cache = KVStateCache(capacity_bytes=1 * MiB)
    cache[(1, 2)] = state(2, 1000)
    cache[(1, 5, 6, 7)] = state(4, 2000)
    assert cache[(1, 5, 6, 9)].llama_state_size == 2000
    assert (9, 9) not in cache
    with pytest.raises(KeyError):
        cache[(9, 9)]
    cache[(3, 3)] = state(2, 2 * MiB)
    assert (3, 3) not in cache.cache_state and cache.cache_size == held(cache) <= 1 * MiB


def test_common_prefix():
    assert common_prefix((1, 2, 3), [1, 2, 4, 5]) == 2
    assert common_prefix((1, 2), (1, 2, 3)) == 2
    assert common_prefix((), (1,)) == 0
    assert common_prefix((5,), (1,)) == 0


# ---------------------------------------------------------------------------------------------------------
# With the real model, through LlamaCppBackend


def backend(cache_bytes: int) -> LlamaCppBackend:
    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing: run `make install`")
    entry = ModelEntry(name=DEFAULT_MODEL_NAME, path=MODEL, n_ctx=4096, n_threads=2)
    return LlamaCppBackend(entry, cache_bytes)


def generate(b: LlamaCppBackend, prompt: str, tokens: int = 2):
    params = GenerationParams(max_tokens=tokens, temperature=0.0, seed=0)
    return b.generate(prompt, params, lambda _t: None, lambda: False)


def chat(b: LlamaCppBackend, *turns: str) -> str:
    roles = ["user", "assistant"]
    return b.render([{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)])


@pytest.mark.model
def test_saved_states_of_long_prompts_stay_within_the_cap():
    cap = 64 * MiB
    b = backend(cap)
    for i in range(3):  # past 512 tokens a state's logits copy alone would be n_batch x n_vocab x 4 = 96 MiB
        prompt = chat(b, f"{FILLER * 13}\nThread {i}: what is this about?")
        assert b.count_tokens(prompt) > 512
        generate(b, prompt)
        assert b.llm.cache.cache_state, "a ~13 MB state fits in 64 MiB: something must be cached"
        assert held(b.llm.cache) <= cap
        assert b.llm.cache.cache_size == held(b.llm.cache)


@pytest.mark.model
def test_turn_two_reuses_turn_one_after_other_threads_ran_and_continues_as_with_full_logits():
    def conversation(b: LlamaCppBackend) -> tuple[str, int, int]:
        first = chat(b, f"Thread A. {FILLER * 3} What is this about?")
        reply = generate(b, first, tokens=8).text
        for i in range(2):  # other threads use the model in between
            generate(b, chat(b, f"Thread {i}. Something else entirely."))
        second = generate(b, chat(b, f"Thread A. {FILLER * 3} What is this about?", reply, "Say more."), 8)
        return second.text, second.cached_tokens, b.count_tokens(first)

    b = backend(256 * MiB)
    text, cached, first_tokens = conversation(b)
    assert cached >= first_tokens  # turn 1's whole prompt (and its reply) came from the cache
    b.llm.reset()
    b.llm.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=1 << 34))  # every logits row kept
    assert conversation(b)[:2] == (text, cached)
