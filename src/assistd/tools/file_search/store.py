"""Chunks and their vectors in Chroma.

One collection per vector store (named by the store id), not one per project with metadata filters:
- deleting a store is one `delete_collection`, and a file's chunks are found by `file_id` inside it;
- a search touches only the stores it names, and each HNSW index stays the size of one store, so a big
  store of one project does not slow down the small stores of another;
- project isolation needs no filter at all: store ids are checked against the project in SQL first.
The cost is one collection per store, which Chroma handles well for the thousands a server holds.

Embedded `PersistentClient` under data_dir/chroma by default, or a Chroma server (`chroma_url`). Telemetry
is off: nothing leaves the machine. The client is made on first use (importing chromadb takes a while).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from assistd.tools.file_search.chunking import Chunk

COSINE = {"hnsw": {"space": "cosine"}}


@dataclass
class StoredChunk:
    id: str
    text: str
    meta: dict[str, Any]


def chunk_id(file_id: str, index: int) -> str:
    return f"{file_id}#{index}"


class ChunkStore:
    def __init__(self, path: Path | None = None, url: str | None = None) -> None:
        self.path, self.url = path, url
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        if self.url:
            parsed = urlparse(self.url)
            secure = parsed.scheme == "https"
            return chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or (443 if secure else 8000),
                ssl=secure,
                settings=settings,
            )
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.path), settings=settings)

    def collection(self, store_id: str) -> Any:
        return self.client.get_or_create_collection(store_id, embedding_function=None, configuration=COSINE)

    def add(
        self, store_id: str, file_id: str, filename: str, chunks: list[Chunk], vectors: np.ndarray
    ) -> None:
        col = self.collection(store_id)
        step = max(1, int(self.client.get_max_batch_size()))
        for start in range(0, len(chunks), step):
            part = chunks[start : start + step]
            col.upsert(
                ids=[chunk_id(file_id, c.index) for c in part],
                embeddings=vectors[start : start + step],
                documents=[c.text for c in part],
                metadatas=[_meta(file_id, filename, c) for c in part],
            )

    def add_raw(
        self, store_id: str, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[dict]
    ) -> None:
        """Bulk insert of prepared rows (the benchmark fills big stores with precomputed vectors)."""
        col = self.collection(store_id)
        step = max(1, int(self.client.get_max_batch_size()))
        for start in range(0, len(ids), step):
            col.add(
                ids=ids[start : start + step],
                embeddings=vectors[start : start + step],
                documents=texts[start : start + step],
                metadatas=metas[start : start + step],
            )

    def delete_file(self, store_id: str, file_id: str) -> None:
        self.collection(store_id).delete(where={"file_id": file_id})

    def drop(self, store_id: str) -> None:
        try:
            self.client.delete_collection(store_id)
        except Exception as exc:  # chromadb raises NotFoundError (or ValueError in older versions)
            if "does not exist" not in str(exc):
                raise

    def count(self, store_id: str, file_id: str | None = None) -> int:
        col = self.collection(store_id)
        if file_id is None:
            return int(col.count())
        return len(col.get(where={"file_id": file_id}, include=[])["ids"])

    def query(
        self, store_id: str, vector: np.ndarray, k: int, file_ids: list[str] | None
    ) -> list[tuple[StoredChunk, float]]:
        """The `k` nearest chunks (restricted to `file_ids` unless None) with their cosine similarity."""
        if file_ids is not None and not file_ids:
            return []
        col = self.collection(store_id)
        total = int(col.count())
        if total == 0:
            return []
        where = None if file_ids is None else {"file_id": {"$in": list(file_ids)}}
        found = col.query(
            query_embeddings=[vector],
            n_results=min(k, total),
            where=where,
            include=["documents", "metadatas", "distances"],
        )
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
        """Every chunk of a store (the BM25 corpus), read in pages."""
        col = self.collection(store_id)
        out: list[StoredChunk] = []
        offset = 0
        while True:
            got = col.get(include=["documents", "metadatas"], limit=page, offset=offset)
            ids = got["ids"]
            out += [
                StoredChunk(cid, doc or "", dict(meta or {}))
                for cid, doc, meta in zip(ids, got["documents"], got["metadatas"], strict=True)
            ]
            if len(ids) < page:
                return out
            offset += page

    def vectors(self, store_id: str, ids: list[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        got = self.collection(store_id).get(ids=ids, include=["embeddings"])
        return {
            cid: np.asarray(vec, dtype=np.float32)
            for cid, vec in zip(got["ids"], got["embeddings"], strict=True)
        }

    def file_chunks(self, store_id: str, file_id: str) -> list[StoredChunk]:
        got = self.collection(store_id).get(where={"file_id": file_id}, include=["documents", "metadatas"])
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
