"""The ingestion pipeline of one file: extract -> chunk -> embed (batched) -> store in Chroma.

Blocking from start to end: the caller (the ingestion worker thread) runs it off the event loop. Extraction
runs in a separate process with capped memory and time (extract_process.py). While it waits for that, and
between embedding batches, it calls `heartbeat()`, which renews the caller's lease and says whether to go on
(False: the file was cancelled, detached or taken over), so a cancel stops a long file within a second or one
batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from assistd.tools.file_search.chunking import Chunk, ChunkingSpec, chunk_segments
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.extract import IngestError
from assistd.tools.file_search.extract_process import ProcessExtractor
from assistd.tools.file_search.store import ChunkStore

# Chunks per embedding call: at most EMBED_BATCH, and at most about EMBED_TOKENS tokens, so that a batch of
# long chunks takes about as long as a batch of short ones and the lease is renewed often enough.
EMBED_BATCH = 64
EMBED_TOKENS = 64 * 256


class Abandoned(Exception):
    """The file stopped being ours to ingest (cancelled, detached, or its lease lost)."""


@dataclass
class IngestResult:
    chunks: int
    usage_bytes: int  # chunk text (UTF-8) plus float32 vectors


class Ingestor:
    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        batch: int = EMBED_BATCH,
        extractor: ProcessExtractor | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.batch = batch
        self.extractor = extractor or ProcessExtractor()

    def ingest(
        self,
        store_id: str,
        file_id: str,
        filename: str,
        data: bytes,
        spec: ChunkingSpec,
        heartbeat: Callable[[], bool] = lambda: True,
    ) -> IngestResult:
        def still_ours() -> None:
            if not heartbeat():
                raise Abandoned(file_id)

        segments = self.extractor.extract(filename, data, still_ours)
        chunks = chunk_segments(segments, self.embedder.tokenizer, spec)
        if not chunks:
            raise IngestError("invalid_file", f"'{filename}' contains no text to index.")
        self.store.delete_file(store_id, file_id)  # a resumed file starts from a clean slate
        usage = 0
        for part in batches(chunks, self.batch, EMBED_TOKENS):
            if not heartbeat():
                raise Abandoned(file_id)
            vectors = self.embedder.encode_documents([c.text for c in part])
            self.store.add(store_id, file_id, filename, part, vectors)
            usage += sum(len(c.text.encode()) for c in part) + vectors.nbytes
        return IngestResult(len(chunks), usage)


def batches(chunks: list[Chunk], most: int, tokens: int) -> list[list[Chunk]]:
    out: list[list[Chunk]] = [[]]
    budget = 0
    for chunk in chunks:
        if out[-1] and (len(out[-1]) >= most or budget + chunk.tokens > tokens):
            out.append([])
            budget = 0
        out[-1].append(chunk)
        budget += chunk.tokens
    return [part for part in out if part]
