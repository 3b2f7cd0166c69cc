"""The assistant message that is written as the model's reply streams (families/channels.py splits the
reply into what the message may show, the reasoning, and where a tool call begins)."""

from __future__ import annotations

import time
from typing import Any

from assistd.engine.store import RunStore, new_message_id
from assistd.families.channels import Piece
from assistd.protocol.messages import text_part
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

# How often the streamed text so far is written to the message (one UPDATE, no event): a poller sees
# progress within about a second (tests/cluster/test_failover.py reads it as "generation is under way"),
# and a run whose worker dies keeps its text up to then. The message's end writes all of it.
FLUSH_SECONDS = 1.0


class MessageSink:
    """The message_creation step and its message, opened at the first piece of text. Deltas are published
    as they come; the text is written to the database every FLUSH_SECONDS so a poller sees progress."""

    def __init__(self, store: RunStore, run: RunRow) -> None:
        self.store = store
        self.run = run
        self.step: StepRow | None = None
        self.message: MessageRow | None = None
        self.parts: list[str] = []
        self.extra_parts: list[dict[str, Any]] = []
        self._held = ""  # whitespace the text ends with so far: published once text follows it
        self._flushed = 0.0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def open(self) -> None:
        if self.message is not None:
            return
        message_id = new_message_id()
        details = {"type": "message_creation", "message_creation": {"message_id": message_id}}
        self.step, self.message = self.store.open_reply(self.run, message_id, details)
        self._flushed = time.monotonic()

    def take(self, piece: Piece) -> None:
        """A piece of the reply as the family's channels split it: its reasoning goes to the store (a
        response streams it as a reasoning item; a run keeps it with its step only), its content here."""
        if piece.reasoning:
            self.store.reasoning_delta(self.run, piece.reasoning)
        self.write(piece.content)

    def write(self, piece: str) -> None:
        """Publishes `piece`, less the whitespace it ends with: that is held until text follows it, so that
        the deltas add up to the message's final text, which never ends in whitespace."""
        if not piece:
            return
        if self.message is None:
            if not piece.strip() and not self.parts:
                return  # leading whitespace opens nothing
            self.open()
        assert self.message is not None
        if not self.parts:
            piece = piece.lstrip()
        piece = self._held + piece
        text = piece.rstrip()
        self._held = piece[len(text) :]
        if not text:
            return
        self.parts.append(text)
        self.store.text_delta(self.message, 0, text)
        if time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.store.save_message(self.message, self.content())
            self._flushed = time.monotonic()

    def replace_text(self, text: str) -> None:
        """Sets the message text to `text` (a cleaned version of what streamed), in the database too."""
        self.parts = [text] if text else []
        self._held = ""
        if self.message is not None:
            self.store.save_message(self.message, self.content())

    def content(self, annotations: list[dict[str, Any]] | None = None, text: str | None = None) -> list[dict]:
        return [text_part(self.text if text is None else text, annotations), *self.extra_parts]
