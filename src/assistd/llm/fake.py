"""A scripted backend for fast unit tests of the engine: it replies with the texts it is given."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from assistd.llm.backend import GenerationParams, GenerationResult


class ScriptedBackend:
    def __init__(
        self, replies: list[str] | None = None, name: str = "fake", n_ctx: int = 4096, delay: float = 0.0
    ) -> None:
        self.name = name
        self.slots = 1
        self.n_ctx = n_ctx
        self.chat_template = None
        self.replies = list(replies or [])
        self.delay = delay
        self.prompts: list[str] = []
        self.grammars: list[str | None] = []
        self.stops: list[list[str]] = []
        self.penalties: list[float] = []
        self.started = threading.Event()

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **variables: Any
    ) -> str:
        lines = [f"<{m['role']}>{m.get('content') or ''}" for m in messages]
        return "\n".join(lines) + "\n<assistant>"

    def tokenize(self, text: str) -> list[int]:
        return [hash(word) % 50_000 for word in text.split()]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(
        self,
        prompt: str,
        params: GenerationParams,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> GenerationResult:
        self.prompts.append(prompt)
        self.grammars.append(params.grammar)
        self.stops.append(list(params.stop))
        self.penalties.append(params.repeat_penalty)
        self.started.set()
        reply = _cut_at_stop(self.replies.pop(0) if self.replies else "OK.", params.stop)
        words = reply.split(" ")
        out: list[str] = []
        finish = "stop"
        for i, word in enumerate(words):
            if cancelled():
                finish = "cancelled"
                break
            if i >= params.max_tokens:
                finish = "length"
                break
            piece = word if i == 0 else " " + word
            out.append(piece)
            on_text(piece)
            if self.delay:
                time.sleep(self.delay)
        return GenerationResult(
            text="".join(out),
            prompt_tokens=self.count_tokens(prompt),
            completion_tokens=len(out),
            finish_reason=finish,  # type: ignore[arg-type]
        )


def _cut_at_stop(reply: str, stop: list[str]) -> str:
    """As a real backend does, the reply ends before the first stop string and does not include it."""
    cuts = [reply.find(s) for s in stop if s and s in reply]
    return reply[: min(cuts)] if cuts else reply
