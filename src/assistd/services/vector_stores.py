"""Vector stores: the resource, search, and the hooks that plug file_search into threads, messages and files.

`container.extras["file_search"]` is the VectorStoreService; the run engine calls `search` and
`thread_store_ids` (both blocking: call them from a worker thread).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session, select

from assistd.errors import InvalidRequest, ServerError
from assistd.ids import created_at_of, new_id, now
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.tools import VectorStoreSpec
from assistd.protocol.vector_stores import (
    BatchFileSpec,
    ChunkingStrategy,
    SearchPage,
    SearchResult,
    TextContent,
    VectorStoreCreate,
    VectorStoreObject,
    VectorStoreSearch,
    VectorStoreUpdate,
)
from assistd.services.ingest_queue import RETRY_ATTEMPTS
from assistd.services.pagination import paginate
from assistd.services.vector_store_files import VectorStoreFileService, get_store_row
from assistd.services.vector_store_ingest import BATCH_FILES, IngestWorker
from assistd.services.vector_store_views import after_commit, is_expired, store_objects
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.files import FileRow
from assistd.storage.messages import MessageRow
from assistd.storage.threads import ThreadRow
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.storage.vector_stores import VectorStoreRow
from assistd.tools.file_search.embedding import Embedder
from assistd.tools.file_search.extract_process import ProcessExtractor
from assistd.tools.file_search.filters import matches
from assistd.tools.file_search.ingest import Ingestor
from assistd.tools.file_search.keywords import KeywordIndex
from assistd.tools.file_search.keywords import drop_in as drop_keywords_in
from assistd.tools.file_search.retrieval import HybridRetriever, Scope, SearchHit
from assistd.tools.file_search.store import ChromaUnavailable, ChunkStore

log = logging.getLogger("assistd.file_search")

PREFIX = "vs_"


class SearchUnavailable(ServerError):
    """Chroma did not answer through the retries: 503, so clients (the SDK included) retry."""

    status_code = 503


THREAD_STORE_DAYS = 7  # stores made for message attachments expire a week after last use, as OpenAI's do
_chunking = TypeAdapter(ChunkingStrategy)


class VectorStoreService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        chunks: ChunkStore,
        embedder: Embedder,
        worker_id: str,
        lease_seconds: float = 60.0,
        extractor: ProcessExtractor | None = None,
        batch_files: int = BATCH_FILES,
        retry_attempts: int = RETRY_ATTEMPTS,
    ) -> None:
        self.db = db
        self.chunks = chunks
        self.embedder = embedder
        self.extractor = extractor or ProcessExtractor()  # capped memory and time: hostile files
        self.keywords = KeywordIndex(db)
        self.retriever = HybridRetriever(chunks, embedder, self.keywords)
        ingestor = Ingestor(chunks, embedder, extractor=self.extractor, keywords=self.keywords)
        self.worker = IngestWorker(
            db,
            blobs,
            ingestor,
            worker_id,
            lease_seconds,
            batch_files=batch_files,
            retry_attempts=retry_attempts,
        )
        self.files = VectorStoreFileService(db, blobs, chunks, self.worker.wake, self.extractor)

    def start(self) -> None:
        self.worker.start()

    def close(self) -> None:
        self.worker.stop()
        self.extractor.close()

    # ------------------------------------------------------------------------------------------- stores
    def create_in(
        self,
        s: Session,
        project: str,
        name: str | None = None,
        description: str | None = None,
        expires_after: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        owner_thread_id: str | None = None,
    ) -> VectorStoreRow:
        oid = new_id(PREFIX)
        created = created_at_of(oid, PREFIX) or now()
        row = VectorStoreRow(
            id=oid,
            project=project,
            created_at=created,
            name=name or "",
            description=description,
            last_active_at=created,
            expires_after=expires_after,
            meta=metadata or {},
            owner_thread_id=owner_thread_id,
        )
        s.add(row)
        s.flush()
        return row

    def create(self, project: str, req: VectorStoreCreate) -> VectorStoreObject:
        with self.db.session() as s:
            expires = req.expires_after.model_dump() if req.expires_after else None
            row = self.create_in(s, project, req.name, req.description, expires, req.metadata)
            for i, file_id in enumerate(req.file_ids or []):
                spec = BatchFileSpec(file_id=file_id, chunking_strategy=req.chunking_strategy)
                self.files.attach_in(s, row, spec, f"file_ids[{i}]")
            s.flush()
            return store_objects(s, [row])[0]

    def get(self, project: str, store_id: str) -> VectorStoreObject:
        with self.db.session() as s:
            return store_objects(s, [get_store_row(s, project, store_id)])[0]

    def list(self, project: str, page: PageQuery) -> ListPage[VectorStoreObject]:
        with self.db.session() as s:
            where = [VectorStoreRow.project == project]
            listed = paginate(s, VectorStoreRow, where, page, lambda row: row, PREFIX)
            return ListPage[VectorStoreObject](
                data=store_objects(s, listed.data),
                first_id=listed.first_id,
                last_id=listed.last_id,
                has_more=listed.has_more,
            )

    def update(self, project: str, store_id: str, req: VectorStoreUpdate) -> VectorStoreObject:
        given = req.provided()
        with self.db.session() as s:
            row = get_store_row(s, project, store_id)
            if "name" in given:
                row.name = req.name or ""
            if "expires_after" in given:
                row.expires_after = req.expires_after.model_dump() if req.expires_after else None
            if "metadata" in given:
                row.meta = req.metadata or {}
            s.add(row)
            s.flush()
            return store_objects(s, [row])[0]

    def delete(self, project: str, store_id: str) -> Deleted:
        with self.db.session() as s:
            self.delete_in(s, get_store_row(s, project, store_id))
        return Deleted(id=store_id, object="vector_store.deleted")

    def delete_in(self, s: Session, row: VectorStoreRow) -> None:
        store_id = row.id
        s.delete(row)  # its files and batches go with it (foreign keys cascade)
        drop_keywords_in(s, store_id)  # the keyword index is in this database: same transaction
        after_commit(s, lambda: self.chunks.drop(store_id))

    # ------------------------------------------------------------------------------------------- search
    def _scopes(self, s: Session, stores: list[VectorStoreRow], flt: dict[str, Any] | None) -> list[Scope]:
        T = VectorStoreFileRow
        scopes = []
        for store in stores:
            files = list(s.exec(select(T).where(T.vector_store_id == store.id)))
            kept = [f for f in files if f.status == "completed" and matches(f.attributes, flt)]
            scopes.append(
                Scope(
                    store.id,
                    {f.id: dict(f.attributes or {}) for f in kept},
                    {f.id: f.filename for f in kept},
                    complete=len(kept) == len(files),
                    chunks=sum(f.chunk_count or 0 for f in files if f.status == "completed"),
                )
            )
            store.last_active_at = now()
            s.add(store)
        return scopes

    def search_store(self, project: str, store_id: str, req: VectorStoreSearch) -> SearchPage:
        """`POST /vector_stores/{id}/search`. rewrite_query is accepted; the query is used as given."""
        with self.db.session() as s:
            store = get_store_row(s, project, store_id)
            if is_expired(store):
                raise InvalidRequest(f"Vector store {store_id} has expired.", param="vector_store_id")
            flt = req.filters.model_dump() if req.filters is not None else None
            scopes = self._scopes(s, [store], flt)
        ranking = req.ranking_options
        try:
            hits = self.retriever.search(
                scopes,
                " ".join(req.queries()),
                req.max_num_results,
                ranking.score_threshold if ranking else 0.0,
                ranking.ranker if ranking else "auto",
            )
        except ChromaUnavailable as exc:
            log.warning("vector store search: %s", exc)
            raise SearchUnavailable(
                "The vector store backend is unavailable; please retry shortly.",
                code="vector_store_unavailable",
            ) from None
        return SearchPage(
            search_query=req.queries(),
            data=[
                SearchResult(
                    file_id=h.file_id,
                    filename=h.filename,
                    score=round(h.score, 6),
                    attributes=h.attributes,
                    content=[TextContent(text=h.text)],
                )
                for h in hits
            ],
        )

    def search(
        self,
        project: str,
        vector_store_ids: list[str],
        query: str,
        max_num_results: int = 20,
        score_threshold: float = 0.0,
        filters: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The engine's search (a run's, a response's): unknown, foreign or expired stores are skipped;
        `filters` (a response's file_search tool) keep the files whose attributes match."""
        ids = list(dict.fromkeys(vector_store_ids))
        if not ids:
            return []
        with self.db.session() as s:
            rows = s.exec(
                select(VectorStoreRow).where(VectorStoreRow.id.in_(ids), VectorStoreRow.project == project)
            )
            stores = [r for r in rows if not is_expired(r)]
            scopes = self._scopes(s, stores, filters)
        return self.retriever.search(scopes, query, max_num_results, score_threshold)

    def thread_store_ids(self, project: str, thread_id: str) -> list[str]:
        with self.db.session() as s:
            thread = s.get(ThreadRow, thread_id)
            if thread is None or thread.project != project:
                return []
            return list(_file_search_ids(thread.tool_resources))

    # -------------------------------------------------------------------------------------------- hooks
    def install(self, resources: Any, files: Any, messages: Any, threads: Any) -> None:
        """Plugs into the issue-2 services (see container.py)."""
        resources.store_exists = self.store_exists
        resources.create_inline_store = self.create_inline_store
        files.delete_hooks.append(self.on_file_deleted)
        messages.attachment_hooks.append(self.on_attachments)
        threads.delete_hooks.append(self.on_thread_deleted)

    def store_exists(self, s: Session, project: str, store_id: str) -> bool:
        row = s.get(VectorStoreRow, store_id)
        return row is not None and row.project == project

    def create_inline_store(self, s: Session, project: str, spec: VectorStoreSpec) -> str:
        """`tool_resources.file_search.vector_stores[0]`: a store made from file ids."""
        param = "tool_resources.file_search.vector_stores[0]"
        strategy = None
        if spec.chunking_strategy is not None:
            try:
                strategy = _chunking.validate_python(spec.chunking_strategy)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise InvalidRequest(
                    f"Invalid '{param}.chunking_strategy': {reason}.", param=f"{param}.chunking_strategy"
                ) from None
        row = self.create_in(s, project, metadata=spec.metadata)
        for i, file_id in enumerate(spec.file_ids):
            self.files.attach_in(
                s, row, BatchFileSpec(file_id=file_id, chunking_strategy=strategy), f"{param}.file_ids[{i}]"
            )
        return row.id

    def on_file_deleted(self, s: Session, file: FileRow) -> None:
        for row in s.exec(select(VectorStoreFileRow).where(VectorStoreFileRow.id == file.id)):
            self.files.detach_in(s, row)

    def on_attachments(self, s: Session, thread: ThreadRow, message: MessageRow) -> None:
        """Files attached with the file_search tool join the thread's vector store (made on first need
        and recorded in the thread's tool_resources)."""
        file_ids = [
            a["file_id"]
            for a in message.attachments or []
            if any(t.get("type") == "file_search" for t in a.get("tools") or [])
        ]
        if not file_ids:
            return
        store = None
        for store_id in _file_search_ids(thread.tool_resources):
            candidate = s.get(VectorStoreRow, store_id)
            if candidate is not None and candidate.project == thread.project:
                store = candidate
                break
        if store is None:
            expiry = {"anchor": "last_active_at", "days": THREAD_STORE_DAYS}
            store = self.create_in(
                s, thread.project, f"{thread.id} files", expires_after=expiry, owner_thread_id=thread.id
            )
            resources = dict(thread.tool_resources or {})
            resources["file_search"] = {"vector_store_ids": [store.id]}
            thread.tool_resources = resources
            s.add(thread)
        for file_id in dict.fromkeys(file_ids):
            existing = s.get(VectorStoreFileRow, (store.id, file_id))
            if existing is None or existing.status in ("failed", "cancelled"):
                self.files.attach_in(s, store, BatchFileSpec(file_id=file_id), "attachments.file_id")

    def on_thread_deleted(self, s: Session, thread: ThreadRow) -> None:
        for row in s.exec(select(VectorStoreRow).where(VectorStoreRow.owner_thread_id == thread.id)):
            self.delete_in(s, row)


def build_file_search(settings: Any, db: Database, blobs: BlobStore, worker_id: str) -> VectorStoreService:
    """The file_search service of a server: Chroma and the embedding model are opened on first use."""
    chunks = ChunkStore(
        settings.chroma_dir or settings.data_dir / "chroma",
        settings.chroma_url,
        token=settings.chroma_token,
        tenant=settings.chroma_tenant,
        database=settings.chroma_database,
    )
    embedder = Embedder(settings.embedding_model, batch_size=settings.embedding_batch_size)
    extractor = ProcessExtractor.from_settings(settings)  # its process starts on the first file
    return VectorStoreService(
        db,
        blobs,
        chunks,
        embedder,
        worker_id,
        settings.ingest_lease_seconds,
        extractor,
        settings.ingest_batch_files,
        settings.ingest_retry_attempts,
    )


def _file_search_ids(resources: dict[str, Any] | None) -> list[str]:
    return list(((resources or {}).get("file_search") or {}).get("vector_store_ids") or [])
