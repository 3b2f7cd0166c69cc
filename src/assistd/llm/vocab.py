"""What the engine needs from a model besides generation: its tokenizer (truncation and counts before a
prompt is sent) and its chat template (rendering). From the GGUF file through llama-cpp-python with
`vocab_only` (no weights: a few MB and a fraction of a second), or from a llama.cpp server's own
`/tokenize` and `/props` when the model lives only there."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from assistd.llm.errors import EngineError, ModelLoadError
from assistd.llm.http import EngineHTTP

log = logging.getLogger("assistd.llm")


class Vocab(Protocol):
    chat_template: str | None
    bos_text: str
    eos_text: str
    bos_id: int | None  # the BOS token the model wants first in a prompt; None: none

    def tokenize(self, text: str) -> list[int]: ...


def prompt_tokens(vocab: Vocab, text: str, tokenize: Callable[[str], list[int]] | None = None) -> list[int]:
    """The tokens of a rendered prompt as the model is fed them: special tokens parsed, a BOS first when
    the model wants one and the template did not write it already (`tokenize`: the vocab's, by default)."""
    tokens = (tokenize or vocab.tokenize)(text)
    if vocab.bos_id is not None and (not tokens or tokens[0] != vocab.bos_id):
        tokens = [vocab.bos_id, *tokens]
    return tokens


class GGUFVocab:
    """The tokenizer and chat template of a GGUF file, read without its weights."""

    def __init__(self, path: Path, name: str) -> None:
        if not path.exists():
            raise ModelLoadError(f"model file {path} for '{name}' does not exist (run `make install`)")
        import llama_cpp

        from assistd.llm.llama_log import route_llama_log

        route_llama_log()
        self._llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        model = self._llm._model
        self.chat_template: str | None = self._llm.metadata.get("tokenizer.chat_template")
        self.bos_text = model.token_get_text(self._llm.token_bos())
        self.eos_text = model.token_get_text(self._llm.token_eos())
        wants_bos = self._llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
        self.bos_id: int | None = self._llm.token_bos() if wants_bos else None
        self.n_ctx_train = int(self._llm.metadata.get(f"{self._arch()}.context_length", 0) or 0)

    def _arch(self) -> str:
        return str(self._llm.metadata.get("general.architecture", ""))

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


class ServerVocab:
    """The tokenizer and chat template of the model a llama.cpp server serves (`/tokenize`, `/props`)."""

    def __init__(self, http: EngineHTTP, props: dict[str, Any]) -> None:
        self._http = http
        self.chat_template = props.get("chat_template") or None
        self.bos_text = props.get("bos_token") or ""
        self.eos_text = props.get("eos_token") or ""
        with_special = self._tokens("", add_special=True)  # what the engine puts before any text
        self.bos_id: int | None = with_special[0] if with_special else None

    def tokenize(self, text: str) -> list[int]:
        return self._tokens(text, add_special=False)

    def _tokens(self, text: str, add_special: bool) -> list[int]:
        request = {"content": text, "add_special": add_special, "parse_special": True}
        body = self._http.post_json("/tokenize", request)
        tokens = body.get("tokens")
        if not isinstance(tokens, list):
            raise EngineError(f"{self._http.label}: /tokenize answered without tokens")
        return [t if isinstance(t, int) else t.get("id", 0) for t in tokens]


class ChatRenderer:
    """A chat template (Jinja, as in the GGUF metadata) rendered as Hugging Face's transformers renders it
    (sandboxed, trim_blocks and lstrip_blocks, loop controls, `raise_exception`, `strftime_now`, a `tojson`
    that keeps non-ASCII text), ending with the opening of an assistant turn. Extra template variables
    (`reasoning_effort`, `enable_thinking`, ...) are passed through."""

    def __init__(self, template: str, bos_text: str, eos_text: str) -> None:
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
        # `{% generation %}` marks training spans (transformers' AssistantTracker): the text renders as is
        self._template = env.from_string(re.sub(r"{%-?\s*(end)?generation\s*-?%}", "", template))
        self._bos, self._eos = bos_text, eos_text
        self._takes_system = True
        try:  # Gemma's templates refuse a system message: it then opens the first user message
            self.render([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
        except TemplateError as exc:
            self._takes_system = "system" not in str(exc).lower()
        except Exception:
            pass  # a template that needs more than this is judged when a run renders it

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **variables: Any
    ) -> str:
        if not self._takes_system:
            messages = _system_into_user(messages)
        return self._template.render(
            messages=messages,
            tools=tools or None,
            bos_token=self._bos,
            eos_token=self._eos,
            add_generation_prompt=True,
            **variables,
        )


def _system_into_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not messages or messages[0].get("role") != "system":
        return messages
    system, rest = messages[0].get("content") or "", messages[1:]
    if rest and rest[0].get("role") == "user":
        return [{**rest[0], "content": f"{system}\n\n{rest[0].get('content') or ''}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


class TemplateError(ValueError):
    """The chat template refused the conversation (its `raise_exception`)."""


def _raise(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    import datetime

    return datetime.datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    import json

    # a plain str, as transformers gives it: a Markup would HTML-escape what templates add to it
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class RecentTokens:
    """The tokens of the texts tokenized last, up to `budget` tokens in all (the oldest go first). A turn's
    prompt is counted while it is fitted to the context and tokenized again when it is sent: with the
    engine's tokenizer that was a second `/tokenize` round trip per turn (issue 20). Thread-safe; the
    tokenizer itself runs outside the lock."""

    def __init__(self, budget: int = 262_144) -> None:
        self.budget = budget
        self._items: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._held = 0  # tokens held
        self._lock = threading.Lock()

    def get(self, text: str, tokenize: Callable[[str], list[int]]) -> list[int]:
        with self._lock:
            kept = self._items.get(text)
            if kept is not None:
                self._items.move_to_end(text)
                return list(kept)
        tokens = tokenize(text)
        if len(tokens) <= self.budget:
            with self._lock:
                if text not in self._items:
                    self._items[text] = tuple(tokens)
                    self._held += len(tokens)
                    while self._held > self.budget:
                        self._held -= len(self._items.popitem(last=False)[1])
        return tokens

    def __len__(self) -> int:
        return len(self._items)


class RemotePrompting:
    """The prompt side shared by the backends that talk to an engine over HTTP: rendering with the chat
    template, counting with the tokenizer; `_http`, `_vocab` and `_renderer` are set by the backend."""

    _http: EngineHTTP
    _vocab: Vocab
    _renderer: ChatRenderer

    @property
    def label(self) -> str:
        return self._http.label

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **variables: Any
    ) -> str:
        return self._renderer.render(messages, tools, **variables)

    def tokenize(self, text: str) -> list[int]:
        recent: RecentTokens | None = self.__dict__.get("_recent_tokens")
        if recent is None:  # one per backend: a text's tokens are its model's
            recent = self.__dict__.setdefault("_recent_tokens", RecentTokens())
        return recent.get(text, self._vocab.tokenize)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def prompt_tokens(self, text: str) -> list[int]:
        return prompt_tokens(self._vocab, text, self.tokenize)
