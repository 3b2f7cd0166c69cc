"""The LLMBackend protocol: what the run engine needs from a language model."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length", "cancelled"]
# where an image stands in a prompt's text (engine/images.py); the nonce keeps clients from writing one
_NONCE = secrets.token_hex(8)
PLACEHOLDER = re.compile(rf"<image-{_NONCE}-\d+>")


def image_placeholder(n: int) -> str:
    return f"<image-{_NONCE}-{n}>"


@dataclass
class GenerationParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # GBNF text; decoding is constrained to it
    preserved_tokens: list[str] = field(default_factory=list)  # control tokens the engine must print
    repeat_penalty: float = 1.0
    seed: int | None = None
    # the prompt's images (engine/images.py), by the placeholder that stands for each in the prompt text;
    # only a backend that sees images (`vision`) is given any
    images: dict[str, bytes] = field(default_factory=dict)


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    cached_tokens: int = 0  # prompt tokens whose KV state was reused instead of recomputed


class LLMBackend(Protocol):
    name: str
    n_ctx: int  # the context one generation may use
    chat_template: str | None
    slots: int  # generations its engine runs at once (batched); the registry queues the others
    # `vision: bool` and `image_tokens(data) -> int` where the engine reads images (sees_images below)

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **variables: Any
    ) -> str:
        """The prompt text for `messages` (OpenAI chat form) through the model's chat template, ending with
        the opening of an assistant turn; `variables` are extra template variables (`reasoning_effort`).
        A template that refuses the conversation raises (llm.vocab.TemplateError or jinja2's errors)."""
        ...

    def tokenize(self, text: str) -> list[int]: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self,
        prompt: str,
        params: GenerationParams,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> GenerationResult:
        """Generates a continuation of `prompt`, calling `on_text` with each new piece of text as it comes.
        Stops at `params.max_tokens`, a stop string, the end of the turn, or when `cancelled()` is true.
        Blocking: call it from a worker thread; up to `slots` threads may call it at once. An engine that
        cannot be reached or fails raises EngineError (llm/errors.py)."""
        ...


def sees_images(backend: object) -> bool:
    """Whether the backend's engine reads images (a llama.cpp engine with a multimodal projector)."""
    return bool(getattr(backend, "vision", False))
