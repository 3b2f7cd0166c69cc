"""A model's reply, split as it streams into what the user may see (content), what the model thought
(reasoning), and where a tool call begins. Each family writes these in its own markup: a think block
(`<think>…</think>`, `[THINK]…[/THINK]`) or harmony's channels (`<|channel|>analysis<|message|>…<|end|>`).
Text that may still become markup is held back until it is known not to be, so no markup ever reaches a
message or a delta."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass
class Piece:
    content: str = ""
    reasoning: str = ""


@dataclass
class ReplyChannels:
    """The base splitter: everything is content until a call marker (no reasoning syntax)."""

    call_markers: tuple[str, ...] = ()
    raw: str = ""  # every character the model wrote
    pos: int = 0  # characters of `raw` consumed
    call_at: int | None = None  # where in `raw` a tool call begins, once one does
    reasoning: str = ""

    def feed(self, piece: str) -> Piece:
        self.raw += piece
        out = Piece()
        if self.call_at is None:
            self._scan(out, final=False)
        return out

    def flush(self) -> Piece:
        """The end of the reply: what was held back as possible markup is what it is."""
        out = Piece()
        if self.call_at is None:
            self._scan(out, final=True)
        return out

    # ------------------------------------------------------------------------------------- scanning
    def _scan(self, out: Piece, final: bool) -> None:
        at, marker = _first(self.raw, self.pos, self.call_markers)
        if marker:
            self._content(out, at)
            self.call_at = at
            return
        self._content(out, len(self.raw) if final else len(self.raw) - _held(self.raw, self.call_markers))

    def _content(self, out: Piece, end: int) -> None:
        if end <= self.pos:
            return
        out.content += self.raw[self.pos : end]
        self.pos = end

    def _reasoning(self, out: Piece, end: int) -> None:
        if end <= self.pos:
            return
        text = self.raw[self.pos : end]
        self.reasoning += text
        out.reasoning += text
        self.pos = end


@dataclass
class ThinkChannels(ReplyChannels):
    """A think block: `open`…`close` is reasoning, the rest content. `thinking` when the prompt already
    opened the block (DeepSeek-R1's and Qwen3-thinking-2507's templates end the generation prompt so): the
    reply starts inside it. Call markers count only outside it, except that a block the prompt opened also
    ends where the format's own call tag comes (a distill that goes straight to its call, never closing
    the block); JSON that merely looks like a call stays reasoning there."""

    open: str = "<think>"
    close: str = "</think>"
    thinking: bool = False

    def __post_init__(self) -> None:
        self._prefilled = self.thinking
        self._tags = tuple(m for m in self.call_markers if not m.startswith(('{"', '[{"')))  # not JSON

    def _scan(self, out: Piece, final: bool) -> None:
        while self.call_at is None:
            if self.thinking and self._prefilled and self._tags:
                at, marker = _first(self.raw, self.pos, (self.close, *self._tags))
                if marker and marker != self.close:
                    self._reasoning(out, at)
                    self.call_at = at
                    return
            if self.thinking:
                at = self.raw.find(self.close, self.pos)
                if at < 0:
                    ends = (self.close, *self._tags) if self._prefilled else (self.close,)
                    self._reasoning(out, len(self.raw) if final else len(self.raw) - _held(self.raw, ends))
                    return
                self._reasoning(out, at)
                self.pos, self.thinking = at + len(self.close), False
                continue
            markers = (self.open, *self.call_markers)
            at, marker = _first(self.raw, self.pos, markers)
            if not marker:
                self._content(out, len(self.raw) if final else len(self.raw) - _held(self.raw, markers))
                return
            self._content(out, at)
            if marker == self.open:
                self.pos, self.thinking = at + len(self.open), True
            else:
                self.call_at = at


HARMONY_MESSAGE = "<|message|>"
HARMONY_END = ("<|end|>", "<|return|>", "<|call|>")
HARMONY_START = "<|start|>assistant"
HEADER_OPENERS = (
    "<|channel|>",
    " to=",
    "to=",
    "<|constrain|>",
    "<|start|>",
    HARMONY_MESSAGE,
)  # a header's start
HARMONY_BREAKS = ("<|start|>", "<|channel|>", "<|constrain|>", HARMONY_MESSAGE)  # a new header in a text


def _for_the_user(header: str) -> bool:
    """Whether a harmony message with this header is for the user: the assistant's final or commentary
    channel, no other recipient, no other role."""
    if "analysis" in header:
        return False
    if "to=" in header:
        return False
    return "<|start|>" not in header or "<|start|>assistant" in header


@dataclass
class HarmonyChannels(ReplyChannels):
    """gpt-oss's harmony format: a reply is messages, each a header (`<|channel|>analysis`, `final`,
    `commentary`, a recipient `to=functions.NAME`) then `<|message|>` then its text up to `<|end|>` (or
    `<|return|>` / `<|call|>`, where generation ends). analysis is reasoning; final and commentary without a
    recipient are content; a header to `functions.NAME` is a tool call, which begins at the header. What a
    confused model writes besides is never shown: a message to another recipient or from another role is
    kept with the reasoning, and a harmony token inside a message's text ends that message."""

    in_header: bool = True  # the generation prompt ends with `<|start|>assistant`: a header comes first
    channel: str = ""
    header_at: int = 0

    def _scan(self, out: Piece, final: bool) -> None:
        while self.call_at is None:
            if self.in_header:
                if self.raw.startswith(HARMONY_START, self.pos):
                    self.pos += len(HARMONY_START)
                rest = self.raw[self.pos :]
                if rest and not any(o.startswith(rest[: len(o)]) for o in HEADER_OPENERS):
                    self.channel, self.in_header = "final", False  # no header: the model answers directly
                    continue
                at = self.raw.find(HARMONY_MESSAGE, self.pos)
                header = self.raw[self.header_at : at if at >= 0 else len(self.raw)]
                if "to=functions." in header:
                    self.call_at = self.header_at
                    return
                if at < 0:
                    return  # the header is still being written
                self.channel = "final" if _for_the_user(header) else "analysis"
                self.pos, self.in_header = at + len(HARMONY_MESSAGE), False
                continue
            markers = (*HARMONY_END, *HARMONY_BREAKS)
            at, marker = _first(self.raw, self.pos, markers)
            end = at if marker else len(self.raw) if final else len(self.raw) - _held(self.raw, markers)
            if self.channel == "analysis":
                self._reasoning(out, end)
            else:
                self._content(out, end)
            if not marker:
                return
            self.pos = self.header_at = at + len(marker) if marker in HARMONY_END else at
            self.in_header = True


def _first(text: str, start: int, markers: tuple[str, ...] | list[str]) -> tuple[int, str]:
    """The earliest marker in text[start:] and where it is ((-1, "") when none)."""
    best, found = -1, ""
    for m in markers:
        if not m:
            continue
        at = text.find(m, start)
        if at >= 0 and (best < 0 or at < best or (at == best and len(m) > len(found))):
            best, found = at, m
    return best, found


def _held(text: str, markers: tuple[str, ...] | list[str]) -> int:
    """How many characters at the end of `text` may be the start of a marker (held back)."""
    starts = _starts(tuple(markers))
    for size in range(min(len(text), max(map(len, markers), default=1) - 1), 0, -1):
        if text[-size:] in starts:
            return size
    return 0


@functools.lru_cache(maxsize=256)
def _starts(markers: tuple[str, ...]) -> frozenset[str]:
    """Every proper beginning of every marker (a set: the check per piece is a few lookups)."""
    return frozenset(m[:i] for m in markers for i in range(1, len(m)))
