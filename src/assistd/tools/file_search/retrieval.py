"""Hybrid retrieval over vector stores: Chroma nearest neighbours + keyword hits, fused (fusion.py).

The keyword side is the database's full-text index (keywords.py: FTS5 on SQLite, tsvector on PostgreSQL):
nothing per store is held in this process, so every node answers the same and its memory does not grow with
the number of stores. A keyword hit that Chroma did not return among the nearest neighbours is read from
Chroma by id (text, metadata and vector: its cosine similarity is computed here); one Chroma no longer has
(its file was removed meanwhile) is dropped. Hits are always checked against the files in scope.

A store indexed before the keyword tables existed is copied into them on its first search (once, whichever
node gets there first: keywords.ensure_backfilled).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.fusion import fuse, ranked
from assistd.tools.file_search.keywords import KeywordIndex
from assistd.tools.file_search.store import ChunkStore, StoredChunk

MIN_CANDIDATES = 40

log = logging.getLogger("assistd.file_search")


@dataclass
class Scope:
    """One store to search and the files that may answer (completed, matching the filters)."""

    store_id: str
    files: dict[str, dict[str, Any]]  # file id -> attributes
    filenames: dict[str, str] = field(default_factory=dict)
    # True when every file of the store may answer: Chroma and the keyword index then search unfiltered
    # (much faster on big stores); hits are still checked against `files`.
    complete: bool = False
    chunks: int = 0  # chunks in the whole store (the keyword ranking's idf); 0: counted when needed


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


class HybridRetriever:
    def __init__(self, chunks: ChunkStore, embedder: Embedder, keywords: KeywordIndex) -> None:
        self.chunks = chunks
        self.embedder = embedder
        self.keywords = keywords

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
            allowed = None if scope.complete else sorted(scope.files)
            for chunk, sim in self.chunks.query(scope.store_id, vector, k, allowed):
                if chunk.meta.get("file_id") in scope.files:
                    similarity[(scope.store_id, chunk.id)] = sim
                    found[(scope.store_id, chunk.id)] = chunk
            if ranker == "none":
                continue
            self.keywords.ensure_backfilled(scope.store_id, lambda store=scope.store_id: self._corpus(store))
            hits = [
                hit
                for hit in self.keywords.search([scope.store_id], query, k, allowed, scope.chunks or None)
                if hit.file_id in scope.files
            ]
            missing = [hit.chunk_id for hit in hits if (scope.store_id, hit.chunk_id) not in found]
            fetched = self.chunks.fetch(scope.store_id, missing)
            for hit in hits:
                key = (scope.store_id, hit.chunk_id)
                if hit.chunk_id in fetched:
                    chunk, vec = fetched[hit.chunk_id]
                    found[key] = chunk
                    similarity[key] = float(np.dot(vec, vector))
                if key in found:  # else: gone from Chroma (its file was removed meanwhile)
                    keyword[key] = hit.score
        scores = fuse(similarity, keyword) if ranker != "none" else dict(similarity)
        by_store = {s.store_id: s for s in scopes}
        return [
            self._hit(by_store[key[0]], found[key], score) for key, score in ranked(scores, threshold, limit)
        ]

    def _corpus(self, store_id: str) -> list[tuple[str, str, str]]:
        log.info("file_search: copying the chunks of %s into the keyword index (indexed before it)", store_id)
        return [(c.id, str(c.meta.get("file_id", "")), c.text) for c in self.chunks.everything(store_id)]

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
