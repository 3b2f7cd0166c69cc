"""How many tokens one reply may take, how much of the context the prompt leaves it, and which limit cut a
reply short.

A reply is limited, as on the hosted API, by
- the client's `max_completion_tokens`: run-wide, what the run's earlier steps used is taken off;
- the model's safety cap `max_reply_tokens` (models file; the bundled 135M model has 1024, the server's
  `--max-reply-tokens`: small models loop); a model without one has none;
- the context: at most what is left of the model's `n_ctx` after the prompt.

The prompt is fitted leaving the reply room for its caps, at most half the context (a reply never crowds out
the whole conversation), and for an uncapped reply UNCAPPED_RESERVE tokens at most (a 128k model still keeps
most of a long thread); a reply shorter than its caps may still take whatever the prompt left.

A reply cut short ends the run `incomplete`. The SDK knows two reasons, "max_completion_tokens" and
"max_prompt_tokens" (openai.types.beta.threads.run.IncompleteDetails): each of the three limits above cut
the completion, so each gives "max_completion_tokens"; "max_prompt_tokens" stays for a prompt that could not
fit the client's `max_prompt_tokens` (runner.py). Which of the three it was is logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from assistd.config import ModelEntry
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

UNCAPPED_RESERVE = 8192

Limit = Literal["max_completion_tokens", "max_reply_tokens", "context"]

DESCRIPTION: dict[Limit, str] = {
    "max_completion_tokens": "the run's max_completion_tokens",
    "max_reply_tokens": "the model's max_reply_tokens",
    "context": "the end of the model's context",
}
REASON: dict[Limit, str] = {  # incomplete_details.reason
    "max_completion_tokens": "max_completion_tokens",
    "max_reply_tokens": "max_completion_tokens",
    "context": "max_completion_tokens",
}


@dataclass(frozen=True)
class ReplyCaps:
    client: int | None  # what the run's max_completion_tokens leaves this reply
    model: int | None  # the model's max_reply_tokens

    def reserve(self, n_ctx: int) -> int:
        """Tokens the prompt leaves free for the reply."""
        caps = [c for c in (self.client, self.model) if c is not None]
        return min(min(caps) if caps else UNCAPPED_RESERVE, max(1, n_ctx // 2))

    def tokens(self, n_ctx: int, prompt_tokens: int) -> int:
        """The reply's max_tokens: never more than the context left after the prompt."""
        return max(1, min(self._limits(n_ctx, prompt_tokens).values()))

    def bound(self, n_ctx: int, prompt_tokens: int) -> Limit:
        """The limit that set max_tokens (on a tie, the client's, then the model's)."""
        limits = self._limits(n_ctx, prompt_tokens)
        return min(limits, key=lambda name: limits[name])  # the first smallest, in the order below

    def _limits(self, n_ctx: int, prompt_tokens: int) -> dict[Limit, int]:
        limits: dict[Limit, int] = {}
        if self.client is not None:
            limits["max_completion_tokens"] = self.client
        if self.model is not None:
            limits["max_reply_tokens"] = self.model
        limits["context"] = n_ctx - prompt_tokens
        return limits


def reply_caps(run: RunRow, entry: ModelEntry, steps: list[StepRow]) -> ReplyCaps:
    client = None
    if run.max_completion_tokens:
        used = sum((s.usage or {}).get("completion_tokens", 0) for s in steps)
        client = max(1, run.max_completion_tokens - used)
    return ReplyCaps(client=client, model=entry.max_reply_tokens)
