"""Hybrid retrieval over one or more vector stores: Chroma nearest neighbours + BM25, fused (fusion.py).

The BM25 index of a store is built from the store's chunks on first search and cached; the store's
`version` (bumped in the database whenever its chunks change) tells when to rebuild, across processes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistd.tools.file_search.bm25 import BM25Index
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.fusion import fuse, ranked
from assistd.tools.file_search.store import ChunkStore, StoredChunk

MIN_CANDIDATES = 40


@dataclass
class Scope:
    """One store to search: its version and the files that may answer (completed, matching the filters)."""

    store_id: str
    version: int
    files: dict[str, dict[str, Any]]  # file id -> attributes
    filenames: dict[str, str] = field(default_factory=dict)


@dataclass
class SearchHit:
    file_id: str
    filename: str
    score: float  # 0..1
    text: str
    attributes: dict
    vector_store_id: str = ""
    chunk_index: int = 0
    page: int | None = None


@dataclass
class _Corpus:
    version: int
    chunks: list[StoredChunk]
    file_ids: np.ndarray
    index: BM25Index
    positions: dict[str, int]


class HybridRetriever:
    def __init__(self, chunks: ChunkStore, embedder: Embedder) -> None:
        self.chunks = chunks
        self.embedder = embedder
        self._corpora: dict[str, _Corpus] = {}
        self._lock = threading.Lock()

    def forget(self, store_id: str) -> None:
        with self._lock:
            self._corpora.pop(store_id, None)

    def corpus(self, scope: Scope) -> _Corpus:
        with self._lock:
            cached = self._corpora.get(scope.store_id)
            if cached is not None and cached.version == scope.version:
                return cached
            chunks = self.chunks.everything(scope.store_id)
            built = _Corpus(
                scope.version,
                chunks,
                np.asarray([c.meta.get("file_id", "") for c in chunks], dtype=object),
                BM25Index([c.text for c in chunks]),
                {c.id: i for i, c in enumerate(chunks)},
            )
            self._corpora[scope.store_id] = built
            return built

    def search(
        self, scopes: list[Scope], query: str, limit: int, threshold: float = 0.0, ranker: str = "auto"
    ) -> list[SearchHit]:
        scopes = [s for s in scopes if s.files]
        if not scopes or not query.strip():
            return []
        vector = self.embedder.encode_query(query)
        k = max(MIN_CANDIDATES, 4 * limit)
        similarity: dict[tuple[str, str], float] = {}
        keyword: dict[tuple[str, str], float] = {}
        found: dict[tuple[str, str], StoredChunk] = {}
        for scope in scopes:
            allowed = sorted(scope.files)
            for chunk, sim in self.chunks.query(scope.store_id, vector, k, allowed):
                similarity[(scope.store_id, chunk.id)] = sim
                found[(scope.store_id, chunk.id)] = chunk
            if ranker == "none":
                continue
            corpus = self.corpus(scope)
            mask = np.isin(corpus.file_ids, allowed) if len(corpus.chunks) else None
            missing = []
            for pos, score in corpus.index.top(query, k, mask):
                key = (scope.store_id, corpus.chunks[pos].id)
                keyword[key] = score
                found.setdefault(key, corpus.chunks[pos])
                if key not in similarity:
                    missing.append(corpus.chunks[pos].id)
            for cid, vec in self.chunks.vectors(scope.store_id, missing).items():
                similarity[(scope.store_id, cid)] = float(np.dot(vec, vector))
        scores = fuse(similarity, keyword) if ranker != "none" else dict(similarity)
        by_store = {s.store_id: s for s in scopes}
        return [
            self._hit(by_store[key[0]], found[key], score) for key, score in ranked(scores, threshold, limit)
        ]

    @staticmethod
    def _hit(scope: Scope, chunk: StoredChunk, score: float) -> SearchHit:
        file_id = str(chunk.meta.get("file_id", ""))
        return SearchHit(
            file_id=file_id,
            filename=scope.filenames.get(file_id) or str(chunk.meta.get("filename", "")),
            score=max(0.0, min(1.0, float(score))),
            text=chunk.text,
            attributes=dict(scope.files.get(file_id) or {}),
            vector_store_id=scope.store_id,
            chunk_index=int(chunk.meta.get("chunk", 0)),
            page=chunk.meta.get("page"),
        )
