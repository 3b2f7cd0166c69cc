"""Chunks and their vectors in Chroma.

One collection per vector store (named by the store id), not one per project with metadata filters:
- deleting a store is one `delete_collection`, and a file's chunks are found by `file_id` inside it;
- a search touches only the stores it names, and each HNSW index stays the size of one store, so a big
  store of one project does not slow down the small stores of another;
- project isolation needs no filter at all: store ids are checked against the project in SQL first.
The cost is one collection per store, which Chroma handles well for the thousands a server holds.

Embedded `PersistentClient` under data_dir/chroma by default, or a Chroma server (`chroma_url`, with an
optional bearer token, tenant and database). Telemetry is off: nothing leaves the machine. The client is made
on first use (importing chromadb takes a while).

Every call is retried on transient failures (connection refused or reset, timeouts, 5xx: a Chroma server
restarting) with bounded backoff, about CHROMA_RETRY_SECONDS in all; past that it raises ChromaUnavailable
(a TransientError: callers that retry whole units of work retry it too; the API answers 503).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from assistd.storage.retry import TransientError, is_transient, retrying
from assistd.tools.file_search.chunking import Chunk

COSINE = {"hnsw": {"space": "cosine"}}
CHROMA_ATTEMPTS = 8  # 0.2 + 0.4 + 0.8 + 1.6 + 2 + 2 + 2 s between them: about CHROMA_RETRY_SECONDS
CHROMA_RETRY_SECONDS = 9
T = TypeVar("T")


_CHROMA_TEXT = (
    "502 bad gateway",
    "503 service",
    "504 gateway",
    "service unavailable",
    "could not connect to a chroma server",
)


class ChromaUnavailable(TransientError):
    """Chroma did not answer (or answered 5xx) through every retry."""


def chroma_transient(exc: BaseException) -> bool:
    """Connection refused/reset/timed out, or a 5xx answer (a restarting server, a proxy in front of it)."""
    if isinstance(exc, ChromaUnavailable) or is_transient(exc):
        return True
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover (chromadb depends on httpx)
        pass
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return int(code()) >= 500
        except (TypeError, ValueError):
            return False
    text = str(exc).lower()
    # chromadb's HttpClient turns a refused connection while it checks tenant and database into ValueError
    return any(t in text for t in _CHROMA_TEXT)


@dataclass
class StoredChunk:
    id: str
    text: str
    meta: dict[str, Any]


def chunk_id(file_id: str, index: int) -> str:
    return f"{file_id}#{index}"


class ChunkStore:
    def __init__(
        self,
        path: Path | None = None,
        url: str | None = None,
        token: str | None = None,
        tenant: str | None = None,
        database: str | None = None,
        attempts: int = CHROMA_ATTEMPTS,
    ) -> None:
        self.path, self.url = path, url
        self.token, self.tenant, self.database = token, tenant, database
        self.attempts = attempts
        self._client: Any = None
        self._lock = threading.Lock()

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return retrying(
                fn,
                what=f"Chroma {what}",
                attempts=self.attempts,
                first_delay=0.2,
                max_delay=2.0,
                transient=chroma_transient,
                kind="chroma",
            )
        except ChromaUnavailable:
            raise
        except Exception as exc:
            if chroma_transient(exc):
                where = self.url or "embedded"
                raise ChromaUnavailable(
                    f"Chroma ({where}) is unavailable: {type(exc).__name__}: {exc}"
                ) from exc
            raise

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        if self.url:
            parsed = urlparse(self.url)
            secure = parsed.scheme == "https"
            return chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or (443 if secure else 8000),
                ssl=secure,
                headers={"Authorization": f"Bearer {self.token}"} if self.token else None,
                settings=settings,
                tenant=self.tenant or DEFAULT_TENANT,
                database=self.database or DEFAULT_DATABASE,
            )
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.path), settings=settings)

    def collection(self, store_id: str) -> Any:
        return self.client.get_or_create_collection(store_id, embedding_function=None, configuration=COSINE)

    def add(
        self, store_id: str, file_id: str, filename: str, chunks: list[Chunk], vectors: np.ndarray
    ) -> None:
        self.upsert(
            store_id,
            [chunk_id(file_id, c.index) for c in chunks],
            vectors,
            [c.text for c in chunks],
            [_meta(file_id, filename, c) for c in chunks],
        )

    def upsert(
        self, store_id: str, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[dict]
    ) -> None:
        """Writes prepared rows (replacing rows with the same ids), in batches of Chroma's maximum size; each
        batch is retried on its own (an upsert is idempotent)."""

        def batch(start: int, step: int) -> None:
            self.collection(store_id).upsert(
                ids=ids[start : start + step],
                embeddings=vectors[start : start + step],
                documents=texts[start : start + step],
                metadatas=metas[start : start + step],
            )

        step = max(1, int(self._retry("max batch size", lambda: self.client.get_max_batch_size())))
        for start in range(0, len(ids), step):
            self._retry("upsert", lambda start=start: batch(start, step))

    def add_raw(
        self, store_id: str, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[dict]
    ) -> None:
        """Bulk insert of prepared rows (the benchmark fills big stores with precomputed vectors)."""
        self.upsert(store_id, ids, vectors, texts, metas)

    def delete_file(self, store_id: str, file_id: str) -> None:
        self._retry("delete", lambda: self.collection(store_id).delete(where={"file_id": file_id}))

    def drop(self, store_id: str) -> None:
        def drop() -> None:
            try:
                self.client.delete_collection(store_id)
            except Exception as exc:  # chromadb raises NotFoundError (or ValueError in older versions)
                if "does not exist" not in str(exc):
                    raise

        self._retry("drop", drop)

    def count(self, store_id: str, file_id: str | None = None) -> int:
        def count() -> int:
            col = self.collection(store_id)
            if file_id is None:
                return int(col.count())
            return len(col.get(where={"file_id": file_id}, include=[])["ids"])

        return self._retry("count", count)

    def query(
        self, store_id: str, vector: np.ndarray, k: int, file_ids: list[str] | None
    ) -> list[tuple[StoredChunk, float]]:
        """The `k` nearest chunks (restricted to `file_ids` unless None) with their cosine similarity."""
        if file_ids is not None and not file_ids:
            return []

        def query() -> dict | None:
            col = self.collection(store_id)
            total = int(col.count())
            if total == 0:
                return None
            where = None if file_ids is None else {"file_id": {"$in": list(file_ids)}}
            return col.query(
                query_embeddings=[vector],
                n_results=min(k, total),
                where=where,
                include=["documents", "metadatas", "distances"],
            )

        found = self._retry("query", query)
        if found is None:
            return []
        return [
            (StoredChunk(cid, doc or "", dict(meta or {})), 1.0 - float(dist))
            for cid, doc, meta, dist in zip(
                found["ids"][0],
                found["documents"][0],
                found["metadatas"][0],
                found["distances"][0],
                strict=True,
            )
        ]

    def everything(self, store_id: str, page: int = 5000) -> list[StoredChunk]:
        """Every chunk of a store, read in pages (the keyword index's backfill of an old store)."""
        out: list[StoredChunk] = []
        offset = 0
        while True:
            got = self._retry(
                "read",
                lambda offset=offset: self.collection(store_id).get(
                    include=["documents", "metadatas"], limit=page, offset=offset
                ),
            )
            ids = got["ids"]
            out += [
                StoredChunk(cid, doc or "", dict(meta or {}))
                for cid, doc, meta in zip(ids, got["documents"], got["metadatas"], strict=True)
            ]
            if len(ids) < page:
                return out
            offset += page

    def fetch(self, store_id: str, ids: list[str]) -> dict[str, tuple[StoredChunk, np.ndarray]]:
        """The chunks with these ids (text, metadata and vector); ids Chroma does not have are left out."""
        if not ids:
            return {}
        got = self._retry(
            "read",
            lambda: self.collection(store_id).get(ids=ids, include=["documents", "metadatas", "embeddings"]),
        )
        return {
            cid: (StoredChunk(cid, doc or "", dict(meta or {})), np.asarray(vec, dtype=np.float32))
            for cid, doc, meta, vec in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            )
        }

    def vectors(self, store_id: str, ids: list[str]) -> dict[str, np.ndarray]:
        return {cid: vec for cid, (_, vec) in self.fetch(store_id, ids).items()}

    def file_chunks(self, store_id: str, file_id: str) -> list[StoredChunk]:
        got = self._retry(
            "read",
            lambda: self.collection(store_id).get(
                where={"file_id": file_id}, include=["documents", "metadatas"]
            ),
        )
        chunks = [
            StoredChunk(cid, doc or "", dict(meta or {}))
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]
        return sorted(chunks, key=lambda c: int(c.meta.get("chunk", 0)))


def _meta(file_id: str, filename: str, chunk: Chunk) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "file_id": file_id,
        "filename": filename,
        "chunk": chunk.index,
        "tokens": chunk.tokens,
    }
    if chunk.page is not None:
        meta["page"] = chunk.page
    if chunk.page_end is not None:
        meta["page_end"] = chunk.page_end
    return meta
