"""Which engine serves a model, and how its backend is built (see EngineKind in config.py):

- llama.cpp, no url: the embedded engine (llm/embedded.py), reached over loopback HTTP;
- llama.cpp, url: an operator-run llama.cpp server, shared by every assistd process that names it;
- openai, url: an OpenAI-compatible completions engine (vLLM, SGLang) (llm/openai_completions.py);
- llama-cpp-python: the former in-process path, one generation at a time (llm/llama_cpp_backend.py).

The first three share the HTTP client (llm/http.py); the tokenizer and chat template come from the GGUF
file when the entry has a `path` (llm/vocab.py), else from the engine."""

from __future__ import annotations

from typing import Any

from assistd.config import ModelEntry
from assistd.llm.backend import LLMBackend
from assistd.llm.http import EngineHTTP
from assistd.llm.vocab import GGUFVocab, ServerVocab, Vocab

PROPS_SECONDS = 10.0


def engine_name(entry: ModelEntry) -> str:
    """The engine that serves `entry`, in words (for `assistd models list`, doctor and the README)."""
    if entry.engine == "llama-cpp-python":
        return "llama-cpp-python (in-process, one generation at a time)"
    if entry.engine == "openai":
        return f"OpenAI-compatible completions engine at {entry.url}"
    if entry.url:
        return f"llama.cpp server at {entry.url}"
    return "embedded llama.cpp server engine (xllamacpp)"


def open_backend(entry: ModelEntry, slots: int, cache_bytes: int, stream_interval: float = 0.0) -> LLMBackend:
    """The backend of `entry`, its engine started (embedded) or reached (remote). Blocking.
    `stream_interval`: seconds between two reads of a token stream (llm/http.py _PacedReads)."""
    if entry.engine == "llama-cpp-python":
        from assistd.llm.llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(entry, cache_bytes)
    if entry.engine == "openai":
        from assistd.llm.openai_completions import OpenAICompletionsBackend

        return OpenAICompletionsBackend(entry, stream_interval)
    from assistd.llm.llama_server import LlamaServerBackend

    if entry.url:
        http = EngineHTTP(
            entry.url, entry.api_key, entry.name, "llama.cpp server", stream_interval=stream_interval
        )
        remote = LlamaServerBackend(entry.name, http, *_vocab_and_props(entry, http), engine=entry.url)
        if entry.parallel:  # the models file's word; else all the slots its /props tells (total_slots)
            remote.slots = entry.parallel
        return remote
    from assistd.llm.embedded import EmbeddedEngine

    engine = EmbeddedEngine(entry, slots, cache_bytes)
    http = EngineHTTP(
        engine.url, engine.api_key, entry.name, "embedded llama.cpp engine", stream_interval=stream_interval
    )
    try:
        backend = LlamaServerBackend(entry.name, http, *_vocab_and_props(entry, http), engine="embedded")
    except Exception:
        engine.close()
        raise
    backend.owned_engine = engine
    return backend


def _vocab_and_props(entry: ModelEntry, http: EngineHTTP) -> tuple[Vocab, dict[str, Any]]:
    props = http.get_json("/props", timeout=PROPS_SECONDS)
    vocab: Vocab = GGUFVocab(entry.path, entry.name) if entry.path else ServerVocab(http, props)
    if entry.chat_template:
        vocab.chat_template = entry.chat_template
    return vocab, props


def can_see(entry: ModelEntry) -> bool | None:
    """Whether `entry`'s model reads images, where its models-file entry tells (None: its engine's /props
    tells, a llama.cpp server at `url`). The OpenAI-compatible engines are given rendered prompts, which
    carry no images, and the llama-cpp-python fallback has no projector."""
    if entry.engine != "llama.cpp":
        return False
    if entry.url:
        return True if entry.mmproj else None
    return entry.mmproj is not None


def sees_images(entry: ModelEntry) -> str:
    """`can_see` in words, for `assistd models list`."""
    return {True: "yes", False: "no", None: "if the engine has a projector (/props)"}[can_see(entry)]
