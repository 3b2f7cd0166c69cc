"""The indexing pipeline, for many files at once: prepare (extract -> chunk) each file, embed the chunks of
all of them together in large batches, write them to Chroma in few large upserts and to the keyword index.

No database and no queue here (services/ingest_queue.py and services/vector_store_ingest.py hold the files
and decide what happens to them). Blocking: the ingestion worker's threads call it, never the event loop.
Extraction runs in a separate process with capped memory and time (extract_process.py); `check()` is called
about every second while waiting for it and between embedding batches, and raises to stop (a file cancelled
or taken over, the server stopping).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from assistd.tools.file_search.chunking import Chunk, ChunkingSpec, chunk_segments
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.extract import IngestError
from assistd.tools.file_search.extract_process import ProcessExtractor
from assistd.tools.file_search.store import ChunkStore, chunk_id
from assistd.tools.file_search.store import _meta as chunk_meta

# Chunks handed to the model per call: at most EMBED_CALL_CHUNKS and about EMBED_CALL_TOKENS tokens. Big
# enough that the model's own batches (`--embedding-batch-size`) are full and sorted by length across files,
# small enough that a cancel or a stop is seen within seconds.
EMBED_CALL_CHUNKS = 256
EMBED_CALL_TOKENS = 256 * 256


class Abandoned(Exception):
    """The file stopped being ours to ingest (cancelled, detached, or its lease lost), or we are stopping."""


class KeywordWriter(Protocol):
    """The keyword side of hybrid search (tools/file_search/keywords.py `KeywordIndex`)."""

    def add(self, store_id: str, file_id: str, chunks: list[tuple[str, str]]) -> None: ...

    def delete_file(self, store_id: str, file_id: str) -> None: ...

    def drop(self, store_id: str) -> None: ...


@dataclass
class Prepared:
    """One file's chunks, ready to embed. `key` is whatever the caller uses to find the file again."""

    key: Any
    store_id: str
    file_id: str
    filename: str
    chunks: list[Chunk]


@dataclass
class Embedded:
    file: Prepared
    vectors: np.ndarray

    @property
    def usage_bytes(self) -> int:
        """What the file costs the store: chunk text (UTF-8) plus float32 vectors."""
        return sum(len(c.text.encode()) for c in self.file.chunks) + self.vectors.nbytes


class Ingestor:
    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        extractor: ProcessExtractor | None = None,
        keywords: KeywordWriter | None = None,
        call_chunks: int = EMBED_CALL_CHUNKS,
        call_tokens: int = EMBED_CALL_TOKENS,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.extractor = extractor or ProcessExtractor()
        self.keywords = keywords
        self.call_chunks = call_chunks
        self.call_tokens = call_tokens

    # ------------------------------------------------------------------------------------------ prepare
    def prepare(
        self, filename: str, data: bytes, spec: ChunkingSpec, check: Callable[[], None] = lambda: None
    ) -> list[Chunk]:
        """Extract and chunk one file. Raises IngestError for a file that cannot be indexed."""
        segments = self.extractor.extract(filename, data, check)
        chunks = chunk_segments(segments, self.embedder.tokenizer, spec)
        if not chunks:
            raise IngestError("invalid_file", f"'{filename}' contains no text to index.")
        return chunks

    # -------------------------------------------------------------------------------------------- embed
    def embed(self, files: list[Prepared], check: Callable[[], None] = lambda: None) -> list[Embedded]:
        """The chunks of all `files` embedded together, a bounded call at a time (check() between calls)."""
        chunks = [c for f in files for c in f.chunks]
        parts = []
        for part in batches(chunks, self.call_chunks, self.call_tokens):
            check()
            parts.append(self.embedder.encode_documents([c.text for c in part], [c.tokens for c in part]))
        dim = parts[0].shape[1] if parts else 0
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        out, at = [], 0
        for f in files:
            out.append(Embedded(f, vectors[at : at + len(f.chunks)]))
            at += len(f.chunks)
        return out

    # -------------------------------------------------------------------------------------------- write
    def write(self, files: list[Embedded]) -> None:
        """Replaces the chunks of `files` in Chroma (per store: one delete, upserts of Chroma's largest
        batch) and in the keyword index. Idempotent: a retry after a failure writes the same rows."""
        by_store: dict[str, list[Embedded]] = defaultdict(list)
        for item in files:
            by_store[item.file.store_id].append(item)
        step = max(1, int(self.store.client.get_max_batch_size()))
        for store_id, items in by_store.items():
            col = self.store.collection(store_id)
            col.delete(where={"file_id": {"$in": [i.file.file_id for i in items]}})  # a resumed file
            ids, texts, metas = [], [], []
            for item in items:
                f = item.file
                ids += [chunk_id(f.file_id, c.index) for c in f.chunks]
                texts += [c.text for c in f.chunks]
                metas += [chunk_meta(f.file_id, f.filename, c) for c in f.chunks]
            vectors = np.concatenate([i.vectors for i in items])
            for start in range(0, len(ids), step):
                end = start + step
                col.upsert(
                    ids=ids[start:end],
                    embeddings=vectors[start:end],
                    documents=texts[start:end],
                    metadatas=metas[start:end],
                )
            if self.keywords is not None:  # the keyword index (KeywordIndex): the same chunks, by chunk id
                for item in items:
                    f = item.file
                    self.keywords.delete_file(store_id, f.file_id)  # a re-chunked file may have fewer
                    self.keywords.add(
                        store_id, f.file_id, [(chunk_id(f.file_id, c.index), c.text) for c in f.chunks]
                    )

    def drop_store(self, store_id: str) -> None:
        """A deleted store's chunks leave Chroma and the keyword index (written after it was deleted)."""
        self.store.drop(store_id)
        if self.keywords is not None:
            self.keywords.drop(store_id)

    def remove(self, store_id: str, file_id: str) -> None:
        """A file's chunks leave Chroma and the keyword index (a failed or cancelled file)."""
        self.store.delete_file(store_id, file_id)
        if self.keywords is not None:
            self.keywords.delete_file(store_id, file_id)


def batches(chunks: list[Chunk], most: int, tokens: int) -> list[list[Chunk]]:
    """Consecutive groups of at most `most` chunks and about `tokens` tokens (a longer chunk goes alone)."""
    out: list[list[Chunk]] = [[]]
    budget = 0
    for chunk in chunks:
        if out[-1] and (len(out[-1]) >= most or budget + chunk.tokens > tokens):
            out.append([])
            budget = 0
        out[-1].append(chunk)
        budget += chunk.tokens
    return [part for part in out if part]
