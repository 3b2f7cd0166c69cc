"""LLMBackend on llama-cpp-python (the fallback engine `llama-cpp-python`: one generation at a time, in
this process): one loaded GGUF model, its chat template, and a RAM cache of KV states so
that turn N of a thread only processes the tokens that are new since turn N-1, even when other threads
ran in between. The cache's whole footprint stays within `kv_cache_bytes` (llm/kv_cache.py); llama.cpp logs
through Python logging (llm/llama_log.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from assistd.config import ModelEntry
from assistd.llm.backend import GenerationParams, GenerationResult
from assistd.llm.errors import ModelLoadError
from assistd.llm.llama_log import diverted_output, route_llama_log
from assistd.llm.malloc import release_large_frees
from assistd.llm.vocab import ChatRenderer

log = logging.getLogger("assistd.llm")


class LlamaCppBackend:
    def __init__(self, entry: ModelEntry, cache_bytes: int) -> None:
        import llama_cpp

        if entry.path is None or not entry.path.exists():
            raise ModelLoadError(
                f"model file {entry.path} for '{entry.name}' does not exist (run `make install`)"
            )
        from assistd.llm.kv_cache import KVStateCache

        self.name = entry.name
        self.slots = 1  # one llama context: one generation at a time
        self._llama_cpp = llama_cpp
        # verbose=False would point fds 1 and 2 of the whole process at /dev/null during the load
        route_llama_log()
        with diverted_output():
            self.llm = llama_cpp.Llama(
                model_path=str(entry.path),
                n_ctx=entry.n_ctx,
                n_gpu_layers=entry.n_gpu_layers,
                n_threads=entry.n_threads,
                n_batch=512,
                logits_all=False,  # KVStateCache keeps one logits row per state: all reuse needs then
                verbose=True,
            )
        self.llm.verbose = False  # no prints per generation; llama.cpp's own log goes to "assistd.llama"
        self.n_ctx = self.llm.n_ctx()
        if cache_bytes > 0:
            release_large_frees()  # or evicted states leave holes in the run threads' heaps
            self.llm.set_cache(KVStateCache(capacity_bytes=cache_bytes))
        self.chat_template = self.llm.metadata.get("tokenizer.chat_template")
        template = entry.chat_template or self.chat_template
        if not template:
            raise ModelLoadError(
                f"model '{entry.name}' ({entry.path}) has no chat template in its GGUF metadata; "
                "set `chat_template` for it in the models file"
            )
        self.chat_template = template
        model = self.llm._model
        self._renderer = ChatRenderer(
            template, model.token_get_text(self.llm.token_bos()), model.token_get_text(self.llm.token_eos())
        )
        log.info("loaded model %s (n_ctx=%d, n_gpu_layers=%d)", self.name, self.n_ctx, entry.n_gpu_layers)

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **variables: Any
    ) -> str:
        return self._renderer.render(messages, tools, **variables)

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _reusable_prefix(self, tokens: list[int]) -> int:
        current = self.llm._input_ids.tolist()
        best = self._llama_cpp.Llama.longest_token_prefix(current, tokens)
        cache = self.llm.cache
        if cache is not None:
            try:
                item = cache[tokens]
                saved = item.input_ids[: item.n_tokens].tolist()  # past n_tokens: stale ids of other runs
                best = max(best, self._llama_cpp.Llama.longest_token_prefix(saved, tokens))
            except KeyError:
                pass
        return best

    def generate(
        self,
        prompt: str,
        params: GenerationParams,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> GenerationResult:
        tokens = self.tokenize(prompt)
        bos = self.llm.token_bos()
        if self.llm.metadata.get("tokenizer.ggml.add_bos_token") == "true" and (
            not tokens or tokens[0] != bos
        ):
            tokens = [bos, *tokens]
        max_tokens = max(1, min(params.max_tokens, self.n_ctx - len(tokens)))
        cached = self._reusable_prefix(tokens)
        grammar = (
            self._llama_cpp.LlamaGrammar.from_string(params.grammar, verbose=False)
            if params.grammar
            else None
        )
        was_cancelled = False

        def stop_when_cancelled(_ids: Any, _logits: Any) -> bool:
            nonlocal was_cancelled
            was_cancelled = was_cancelled or cancelled()
            return was_cancelled

        pieces: list[str] = []
        finish = "stop"
        stream = self.llm.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            repeat_penalty=params.repeat_penalty,
            stop=params.stop or None,
            grammar=grammar,
            seed=params.seed,
            stream=True,
            stopping_criteria=self._llama_cpp.StoppingCriteriaList([stop_when_cancelled]),
        )
        completion_tokens = 0
        for chunk in stream:
            choice = chunk["choices"][0]
            text = choice["text"]
            if text:
                pieces.append(text)
                on_text(text)
            if choice.get("finish_reason") is None:
                completion_tokens += 1
            else:
                finish = choice["finish_reason"]
        if was_cancelled:
            finish = "cancelled"
        return GenerationResult(
            text="".join(pieces),
            prompt_tokens=len(tokens),
            completion_tokens=completion_tokens,
            finish_reason=finish,  # type: ignore[arg-type]
            cached_tokens=cached,
        )
