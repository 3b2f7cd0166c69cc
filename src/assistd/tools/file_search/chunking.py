"""Token windows over a document's text, counted with the embedding model's tokenizer.

`auto` is 800 tokens with 400 overlap (the OpenAI default); `static` takes 100-4096 tokens and an overlap of
at most half. Each chunk is a slice of the original text (token offsets map back to characters), so the
text a search returns is exactly what the file said, and it keeps the page (or slide) it starts and ends on.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass
from typing import Any, Protocol

from assistd.tools.file_search.extract import Segment

AUTO_MAX_TOKENS, AUTO_OVERLAP = 800, 400
MIN_TOKENS, MAX_TOKENS = 100, 4096
SEPARATOR = "\n\n"
SLICE_CHARS = 64 * 1024  # characters tokenized at once: bounded memory whatever the document's size
_LOOK_BACK = 4096  # how far back from a slice's end a whitespace is looked for


class Tokenizer(Protocol):
    def offsets(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) character span of every token of `text`, no special tokens."""
        ...


@dataclass(frozen=True)
class ChunkingSpec:
    max_tokens: int = AUTO_MAX_TOKENS
    overlap: int = AUTO_OVERLAP
    auto: bool = True

    @classmethod
    def static(cls, max_tokens: int, overlap: int) -> ChunkingSpec:
        check_static(max_tokens, overlap)
        return cls(max_tokens, overlap, auto=False)

    def to_wire(self) -> dict[str, Any]:
        """The `chunking_strategy` of a vector store file: always the static numbers actually used."""
        return {
            "type": "static",
            "static": {"max_chunk_size_tokens": self.max_tokens, "chunk_overlap_tokens": self.overlap},
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any] | None) -> ChunkingSpec:
        if not data or data.get("type") != "static":
            return cls()
        static = data["static"]
        return cls(int(static["max_chunk_size_tokens"]), int(static["chunk_overlap_tokens"]), auto=False)


def check_static(max_tokens: int, overlap: int) -> None:
    """Raises ValueError with the rule broken (the protocol layer turns it into a 400)."""
    if not MIN_TOKENS <= max_tokens <= MAX_TOKENS:
        raise ValueError(
            f"max_chunk_size_tokens must be between {MIN_TOKENS} and {MAX_TOKENS}, got {max_tokens}"
        )
    if overlap < 0:
        raise ValueError(f"chunk_overlap_tokens must not be negative, got {overlap}")
    if overlap > max_tokens // 2:
        raise ValueError(
            f"chunk_overlap_tokens ({overlap}) must not exceed half of max_chunk_size_tokens ({max_tokens})"
        )


@dataclass
class Chunk:
    index: int
    text: str
    tokens: int
    page: int | None = None
    page_end: int | None = None


def join_segments(segments: list[Segment]) -> tuple[str, list[int], list[int | None]]:
    """The document text, the character offset where each segment starts, and each segment's page."""
    parts, starts, pages, offset = [], [], [], 0
    for segment in segments:
        if parts:
            parts.append(SEPARATOR)
            offset += len(SEPARATOR)
        starts.append(offset)
        pages.append(segment.page)
        parts.append(segment.text)
        offset += len(segment.text)
    return "".join(parts), starts, pages


def chunk_segments(
    segments: list[Segment], tokenizer: Tokenizer, spec: ChunkingSpec, slice_chars: int = SLICE_CHARS
) -> list[Chunk]:
    text, starts, pages = join_segments(segments)
    first_chars, last_chars = token_spans(text, tokenizer, slice_chars)
    n_tokens = len(first_chars)
    if not n_tokens:
        return []

    def page_at(char: int) -> int | None:
        return pages[max(0, bisect.bisect_right(starts, char) - 1)]

    stride = max(1, spec.max_tokens - spec.overlap)
    chunks: list[Chunk] = []
    start = 0
    while start < n_tokens:
        end = min(start + spec.max_tokens, n_tokens)
        first, last = first_chars[start], last_chars[end - 1]
        piece = text[first:last].strip()
        if piece:
            chunks.append(
                Chunk(len(chunks), piece, end - start, page_at(first), page_at(max(first, last - 1)))
            )
        if end == n_tokens:
            break
        start += stride
    return chunks


def token_spans(text: str, tokenizer: Tokenizer, slice_chars: int = SLICE_CHARS) -> tuple[array, array]:
    """The first and last+1 character of every token of `text`, as two compact arrays (16 bytes a token;
    a list of tuples costs about ten times that, and the tokenizer's own output as much again). The text is
    tokenized a slice at a time, each cut at whitespace, which no token of our tokenizers crosses."""
    firsts, lasts = array("q"), array("q")
    pos = 0
    while pos < len(text):
        cut = _slice_end(text, pos, slice_chars)
        spans = tokenizer.offsets(text[pos:cut])
        firsts.extend(pos + first for first, _ in spans)
        lasts.extend(pos + last for _, last in spans)
        pos = cut
    return firsts, lasts


def _slice_end(text: str, pos: int, slice_chars: int) -> int:
    """Where the slice from `pos` ends: at a whitespace character near `pos + slice_chars`, or there."""
    end = pos + slice_chars
    if end >= len(text):
        return len(text)
    for cut in range(end, max(pos, end - _LOOK_BACK), -1):
        if text[cut].isspace():
            return cut
    return end
