"""Hybrid retrieval over one or more vector stores: Chroma nearest neighbours + BM25, fused (fusion.py).

The BM25 index of a store is built from the store's chunks on first search and cached (the most recently
used MAX_CORPORA stores); the store's `version` (bumped in the database whenever its chunks change) tells
when to rebuild, across processes. A small store is rebuilt before the search that finds it stale; a big
one (rebuilding 100k chunks takes seconds) keeps answering from the stale index while a background thread
rebuilds it: meanwhile chunks of new files are found by vector similarity only, and chunks of removed files
never come back (hits are always checked against the files in scope).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistd.tools.file_search.bm25 import BM25Index
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.fusion import fuse, ranked
from assistd.tools.file_search.store import ChunkStore, StoredChunk

MIN_CANDIDATES = 40
MAX_CORPORA = 32
BACKGROUND_REBUILD_CHUNKS = 20_000

log = logging.getLogger("assistd.file_search")


@dataclass
class Scope:
    """One store to search: its version and the files that may answer (completed, matching the filters)."""

    store_id: str
    version: int
    files: dict[str, dict[str, Any]]  # file id -> attributes
    filenames: dict[str, str] = field(default_factory=dict)
    # True when every file of the store may answer: Chroma and BM25 then search unfiltered (much faster
    # on big stores); hits are still checked against `files`.
    complete: bool = False


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
    file_codes: np.ndarray  # per chunk, the number of its file in `code_of`
    code_of: dict[str, int]
    index: BM25Index

    def mask(self, file_ids: list[str]) -> np.ndarray:
        wanted = [self.code_of[f] for f in file_ids if f in self.code_of]
        return np.isin(self.file_codes, np.asarray(wanted, dtype=np.int32))


class HybridRetriever:
    def __init__(self, chunks: ChunkStore, embedder: Embedder) -> None:
        self.chunks = chunks
        self.embedder = embedder
        self._corpora: OrderedDict[str, _Corpus] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}  # one build at a time per store
        self._background: set[str] = set()

    def forget(self, store_id: str) -> None:
        with self._lock:
            self._corpora.pop(store_id, None)

    def _cached(self, store_id: str) -> _Corpus | None:
        with self._lock:
            cached = self._corpora.get(store_id)
            if cached is not None:
                self._corpora.move_to_end(store_id)
            return cached

    def corpus(self, scope: Scope) -> _Corpus:
        cached = self._cached(scope.store_id)
        if cached is not None and cached.version == scope.version:
            return cached
        if cached is not None and len(cached.chunks) >= BACKGROUND_REBUILD_CHUNKS:
            self._rebuild_later(scope)
            return cached
        return self._build(scope)

    def _build(self, scope: Scope) -> _Corpus:
        with self._lock:
            guard = self._building.setdefault(scope.store_id, threading.Lock())
        with guard:
            cached = self._cached(scope.store_id)
            if cached is not None and cached.version >= scope.version:
                return cached  # built meanwhile by another search
            chunks = self.chunks.everything(scope.store_id)
            code_of: dict[str, int] = {}
            codes = [code_of.setdefault(str(c.meta.get("file_id", "")), len(code_of)) for c in chunks]
            built = _Corpus(
                scope.version,
                chunks,
                np.asarray(codes, dtype=np.int32),
                code_of,
                BM25Index([c.text for c in chunks]),
            )
            with self._lock:
                self._corpora[scope.store_id] = built
                self._corpora.move_to_end(scope.store_id)
                while len(self._corpora) > MAX_CORPORA:
                    self._corpora.popitem(last=False)
            return built

    def _rebuild_later(self, scope: Scope) -> None:
        with self._lock:
            if scope.store_id in self._background:
                return
            self._background.add(scope.store_id)

        def rebuild() -> None:
            try:
                self._build(scope)
            except Exception:
                log.exception("file_search: rebuilding the keyword index of %s", scope.store_id)
            finally:
                with self._lock:
                    self._background.discard(scope.store_id)

        threading.Thread(target=rebuild, name=f"bm25-{scope.store_id}", daemon=True).start()

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
            corpus = self.corpus(scope)
            mask = None if allowed is None else corpus.mask(allowed)
            missing = []
            for pos, score in corpus.index.top(query, k, mask):
                if corpus.chunks[pos].meta.get("file_id") not in scope.files:
                    continue
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
