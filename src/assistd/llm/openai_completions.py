"""LLMBackend on an OpenAI-compatible engine's raw-prompt completions endpoint (`POST {url}/v1/completions`,
streamed, usage in its last events), as vLLM and SGLang serve it; llama.cpp's server answers it too. The
prompt is rendered and tokenized here and sent as token ids, so that it is counted and truncated as the
engine sees it; the engine batches the requests of all its clients, the registry's gate only bounds how many
this process sends at once (`parallel`, default 16).

Where the tokenizer and the chat template come from: the GGUF file at `path` (the same model; its token ids
are the engine's), else the engine: llama.cpp's `/tokenize` and `/props` when the engine is llama.cpp
(`owned_by` in `/v1/models`), otherwise vLLM's `/tokenize` with the models file's `chat_template`. Engines
differ in the keys of two parameters: the grammar (`grammar_param`) and the repetition penalty
(`penalty_param`), set per model in the models file (config.ModelEntry)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from assistd.config import ModelEntry
from assistd.llm.backend import GenerationParams, GenerationResult
from assistd.llm.errors import EngineError, ModelLoadError
from assistd.llm.http import EngineHTTP
from assistd.llm.vocab import ChatRenderer, GGUFVocab, RemotePrompting, ServerVocab, Vocab

log = logging.getLogger("assistd.llm")

DEFAULT_SLOTS = 16  # requests in flight from this process; the engine batches them with everyone else's
LOAD_SECONDS = 10.0
FINISH_REASONS = {"stop": "stop", "length": "length"}


class CompletionsVocab:
    """The tokenizer of the model a vLLM engine serves (its `/tokenize`). Such engines publish neither the
    chat template (it comes from the models file) nor the BOS/EOS text (rendered empty; the BOS the
    tokenizer adds is put first as an id)."""

    def __init__(self, http: EngineHTTP, model: str, chat_template: str | None) -> None:
        self._http = http
        self._model = model
        self.chat_template = chat_template
        self.bos_text = ""
        self.eos_text = ""
        with_special = self._tokens("", add_special=True)  # what the tokenizer puts before any text
        self.bos_id: int | None = with_special[0] if with_special else None

    def tokenize(self, text: str) -> list[int]:
        return self._tokens(text, add_special=False)

    def _tokens(self, text: str, add_special: bool) -> list[int]:
        request = {"model": self._model, "prompt": text, "add_special_tokens": add_special}
        tokens = self._http.post_json("/tokenize", request).get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise EngineError(f"{self._http.label}: /tokenize answered without token ids")
        return tokens


def grammar_fields(param: str, grammar: str) -> dict[str, Any]:
    """The request fields that carry a GBNF grammar under `param`; a dotted key nests: "a.b" gives
    {"a": {"b": grammar}}."""
    head, _, rest = param.partition(".")
    return {head: grammar_fields(rest, grammar) if rest else grammar}


class OpenAICompletionsBackend(RemotePrompting):
    def __init__(self, entry: ModelEntry, stream_interval: float = 0.0) -> None:
        assert entry.url is not None  # ModelEntry requires it for engine "openai"
        self.name = entry.name
        self.engine = entry.url  # for logs and doctor
        self.model = entry.remote_model or entry.name  # the `model` the engine serves it under
        self._http = EngineHTTP(
            entry.url, entry.api_key, entry.name, "OpenAI-compatible engine", stream_interval=stream_interval
        )
        self._grammar_param = entry.grammar_param
        self._penalty_param = entry.penalty_param
        self.slots = entry.parallel or DEFAULT_SLOTS
        try:
            listed = self._listed()
            self._vocab = self._open_vocab(entry, listed)
        except EngineError as exc:
            self._http.close()
            raise ModelLoadError(str(exc)) from exc
        except Exception:
            self._http.close()
            raise
        # The engine's context for one request, where it tells it (vLLM: max_model_len; llama.cpp: per slot).
        engine_ctx = int(listed.get("max_model_len") or (listed.get("meta") or {}).get("n_ctx") or 0)
        self.n_ctx = min(entry.n_ctx, engine_ctx) if engine_ctx else entry.n_ctx
        self.chat_template = entry.chat_template or self._vocab.chat_template
        if not self.chat_template:
            self._http.close()
            raise ModelLoadError(
                f"{self.label}: the model has no chat template (GGUF metadata or the engine's /props); "
                "set `chat_template` for it in the models file"
            )
        self._renderer = ChatRenderer(self.chat_template, self._vocab.bos_text, self._vocab.eos_text)

    def _listed(self) -> dict[str, Any]:
        """The engine's `/v1/models` entry for this model (llama.cpp: its one model, under any name)."""
        body = self._http.get_json("/v1/models", timeout=LOAD_SECONDS)
        models = (
            [m for m in (body.get("data") or []) if isinstance(m, dict)] if isinstance(body, dict) else []
        )
        for model in models:
            if model.get("id") == self.model:
                return model
        if len(models) == 1 and models[0].get("owned_by") == "llamacpp":
            return models[0]  # llama.cpp serves its one model under any name
        served = ", ".join(str(m.get("id")) for m in models) or "none"
        raise ModelLoadError(
            f"{self.label} does not serve '{self.model}' (it serves: {served}); "
            "set `remote_model` in the models file"
        )

    def _open_vocab(self, entry: ModelEntry, listed: dict[str, Any]) -> Vocab:
        if entry.path is not None:
            return GGUFVocab(entry.path, entry.name)
        if listed.get("owned_by") == "llamacpp":
            return ServerVocab(self._http, self._http.get_json("/props", timeout=LOAD_SECONDS))
        if not entry.chat_template:
            raise ModelLoadError(
                f"{self.label}: no chat template for the model: give its GGUF `path` or set `chat_template` "
                "in the models file (this engine does not publish its template)"
            )
        return CompletionsVocab(self._http, self.model, entry.chat_template)

    def close(self) -> None:
        self._http.close()

    def request(self, tokens: list[int], params: GenerationParams) -> dict[str, Any]:
        """The body of one streamed completion of the prompt `tokens`."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": tokens,
            "max_tokens": max(1, min(params.max_tokens, self.n_ctx - len(tokens))),
            "temperature": params.temperature,
            "top_p": params.top_p,
            self._penalty_param: params.repeat_penalty,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        if params.grammar:
            body.update(grammar_fields(self._grammar_param, params.grammar))
        if params.preserved_tokens:  # the family's markup tokens (harmony, Mistral) must come back as text:
            body["skip_special_tokens"] = False  # vLLM's and SGLang's key
            body["preserved_tokens"] = params.preserved_tokens  # llama.cpp's
        return body

    def generate(
        self,
        prompt: str,
        params: GenerationParams,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> GenerationResult:
        tokens = self.prompt_tokens(prompt)
        pieces: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        for batch in self._http.event_batches("/v1/completions", self.request(tokens, params), cancelled):
            # the tokens that came together are handed on as one piece: one delta, not one per token
            texts = []
            for event in batch:
                for choice in event.get("choices") or []:
                    texts.append(choice.get("text") or "")
                    finish = choice.get("finish_reason") or finish
                usage = event.get("usage") or usage  # llama.cpp: with the last choice; vLLM: an event alone
            text = "".join(texts)
            if text:
                pieces.append(text)
                on_text(text)
            if finish is None and cancelled():  # leaving the stream closes it: the engine frees the slot
                break
        text = "".join(pieces)
        return GenerationResult(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or len(tokens)),
            completion_tokens=int(usage.get("completion_tokens") or (self.count_tokens(text) if text else 0)),
            finish_reason=self._finish(finish, cancelled),  # type: ignore[arg-type]
            cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        )

    def _finish(self, finish: str | None, cancelled: Callable[[], bool]) -> str:
        if finish is None:
            if cancelled():
                return "cancelled"
            raise EngineError(f"{self.label} ended its reply without a finish_reason")
        if finish not in FINISH_REASONS:
            raise EngineError(f"{self.label} ended its reply with finish_reason '{finish}'")
        return FINISH_REASONS[finish]
