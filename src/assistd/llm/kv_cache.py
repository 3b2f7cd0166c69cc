"""A RAM cache of saved llama.cpp states whose size is what it really holds.

llama-cpp-python's `LlamaRAMCache` counts only the KV bytes of each `LlamaState`, but a state also holds a
copy of the model's logits (`scores`: up to n_batch x n_vocab floats, ~100 MB for SmolLM2) and the
n_ctx-long `input_ids`. With `logits_all=False` (our backend) llama-cpp-python never reads past the last
logits row after `load_state` (sampling decodes the prompt suffix again), so each saved state keeps only
that row, and every byte an entry keeps counts toward `capacity_bytes`.

Lookups return the entry sharing the longest token prefix with the prompt (least recently used first out);
an entry whose tokens are a prefix of a newer entry's is dropped, since the newer one serves every lookup
the older one could (turn N of a thread supersedes turn N-1)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from llama_cpp.llama import LlamaState
from llama_cpp.llama_cache import BaseLlamaCache

Key = tuple[int, ...]


def footprint(state: LlamaState) -> int:
    """Bytes a saved state holds: the llama.cpp state (KV cells and more), its logits and its token ids."""
    return len(state.llama_state) + state.scores.nbytes + state.input_ids.nbytes


def compact(state: LlamaState) -> LlamaState:
    """`state` with only the last logits row (all that reuse reads with `logits_all=False`)."""
    if state.scores.shape[0] <= 1:
        return state
    return LlamaState(
        input_ids=state.input_ids,
        scores=state.scores[-1:].copy(),
        n_tokens=state.n_tokens,
        llama_state=state.llama_state,
        llama_state_size=state.llama_state_size,
        seed=state.seed,
    )


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64)
    return int(differ.argmax()) if differ.any() else n


class KVStateCache(BaseLlamaCache):
    def __init__(self, capacity_bytes: int) -> None:
        super().__init__(capacity_bytes)
        self.cache_state: OrderedDict[Key, LlamaState] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        self._size = 0

    @property
    def cache_size(self) -> int:
        return self._size

    def _longest_prefix_key(self, key: Sequence[int]) -> Key | None:
        best, best_len = None, 0
        for k in self.cache_state:
            n = common_prefix(k, key)
            if n > best_len:
                best, best_len = k, n
        return best

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        found = self._longest_prefix_key(key)
        if found is None:
            raise KeyError("no saved state shares a prefix with these tokens")
        self.cache_state.move_to_end(found)
        return self.cache_state[found]

    def __contains__(self, key: Sequence[int]) -> bool:
        return self._longest_prefix_key(key) is not None

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        key = tuple(key)
        state = compact(value)
        size = footprint(state)
        superseded = [k for k in self.cache_state if len(k) <= len(key) and key[: len(k)] == k]
        for k in superseded:
            self._drop(k)
        if size > self.capacity_bytes:
            return
        while self.cache_state and self._size + size > self.capacity_bytes:
            self._drop(next(iter(self.cache_state)))
        self.cache_state[key] = state
        self._sizes[key] = size
        self._size += size

    def _drop(self, key: Key) -> None:
        del self.cache_state[key]
        self._size -= self._sizes.pop(key)
