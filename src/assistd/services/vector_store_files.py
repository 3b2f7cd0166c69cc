"""Vector store files and file batches: attach, list, update attributes, detach, content, batch cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import Session, select

from assistd.errors import InvalidRequest, NotFound
from assistd.ids import created_at_of, new_id, now
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.vector_stores import (
    BatchFileSpec,
    FileBatchCreate,
    FileContentPage,
    TextContent,
    VectorStoreFileBatchObject,
    VectorStoreFileCreate,
    VectorStoreFileObject,
    VectorStoreFileUpdate,
    chunking_spec,
)
from assistd.services.ingest_queue import INGEST_CHANNEL
from assistd.services.vector_store_views import after_commit, batch_object, file_object
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.files import FileRow
from assistd.storage.notify import notify
from assistd.storage.vector_store_batches import VectorStoreFileBatchRow
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.storage.vector_stores import VectorStoreRow
from assistd.tools.file_search.extract import IngestError
from assistd.tools.file_search.extract_process import ProcessExtractor
from assistd.tools.file_search.keywords import delete_file_in as delete_keywords_in
from assistd.tools.file_search.store import ChunkStore

BATCH_PREFIX = "vsfb_"
FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")


def get_store_row(s: Session, project: str, store_id: str) -> VectorStoreRow:
    row = s.get(VectorStoreRow, store_id)
    if row is None or row.project != project:
        raise NotFound.of("vector store", store_id)
    return row


def check_filter(value: str | None) -> str | None:
    if value is not None and value not in FILE_STATUSES:
        allowed = ", ".join(f"'{v}'" for v in FILE_STATUSES)
        raise InvalidRequest(
            f"Invalid value for 'filter': '{value}'. Supported values are: {allowed}.", param="filter"
        )
    return value


class VectorStoreFileService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        chunks: ChunkStore,
        wake: Callable[[], None],
        extractor: ProcessExtractor,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.chunks = chunks
        self.wake = wake
        self.extractor = extractor

    # ------------------------------------------------------------------------------------------- attach
    def attach_in(
        self, s: Session, store: VectorStoreRow, spec: BatchFileSpec, param: str, batch_id: str | None = None
    ) -> VectorStoreFileRow:
        """Attaches a File (or re-indexes one attached already) inside the caller's transaction; the
        worker is woken once the transaction commits."""
        file = s.get(FileRow, spec.file_id)
        if file is None or file.project != store.project:
            raise InvalidRequest(f"No file found with id '{spec.file_id}'.", param=param)
        row = s.get(VectorStoreFileRow, (store.id, spec.file_id))
        if row is None:
            row = VectorStoreFileRow(
                vector_store_id=store.id, id=spec.file_id, project=store.project, created_at=now()
            )
        row.filename = file.filename
        row.status, row.usage_bytes, row.chunk_count, row.last_error = "in_progress", 0, 0, None
        row.chunking_strategy = chunking_spec(spec.chunking_strategy).to_wire()
        row.attributes = spec.attributes or {}
        row.batch_id = batch_id
        row.worker_id, row.lease_until, row.attempts = None, None, 0
        row.retries, row.not_before = 0, None  # `epoch` only grows: it fences the workers of earlier attaches
        s.add(row)
        store.last_active_at = now()
        s.add(store)
        after_commit(s, self.wake)
        notify(s, self.db, INGEST_CHANNEL, store.id)  # the workers of other processes (PostgreSQL)
        return row

    def create(self, project: str, store_id: str, req: VectorStoreFileCreate) -> VectorStoreFileObject:
        with self.db.session() as s:
            store = get_store_row(s, project, store_id)
            spec = BatchFileSpec(
                file_id=req.file_id, attributes=req.attributes, chunking_strategy=req.chunking_strategy
            )
            row = self.attach_in(s, store, spec, "file_id")
            s.flush()
            return file_object(row)

    # -------------------------------------------------------------------------------------------- files
    def _row(self, s: Session, project: str, store_id: str, file_id: str) -> VectorStoreFileRow:
        get_store_row(s, project, store_id)
        row = s.get(VectorStoreFileRow, (store_id, file_id))
        if row is None:
            raise NotFound.of("vector store file", file_id)
        return row

    def get(self, project: str, store_id: str, file_id: str) -> VectorStoreFileObject:
        with self.db.session() as s:
            return file_object(self._row(s, project, store_id, file_id))

    def list(
        self,
        project: str,
        store_id: str,
        page: PageQuery,
        status: str | None = None,
        batch_id: str | None = None,
    ) -> ListPage[VectorStoreFileObject]:
        check_filter(status)
        T = VectorStoreFileRow
        with self.db.session() as s:
            get_store_row(s, project, store_id)
            where = [T.vector_store_id == store_id]
            if status:
                where.append(T.status == status)
            if batch_id is not None:
                where.append(T.batch_id == batch_id)
            return page_files(s, where, page)

    def update(
        self, project: str, store_id: str, file_id: str, req: VectorStoreFileUpdate
    ) -> VectorStoreFileObject:
        with self.db.session() as s:
            row = self._row(s, project, store_id, file_id)
            row.attributes = req.attributes or {}
            s.add(row)
            return file_object(row)

    def delete(self, project: str, store_id: str, file_id: str) -> Deleted:
        with self.db.session() as s:
            row = self._row(s, project, store_id, file_id)
            self.detach_in(s, row)
        return Deleted(id=file_id, object="vector_store.file.deleted")

    def detach_in(self, s: Session, row: VectorStoreFileRow) -> None:
        """Removes the row; its chunks leave Chroma after the commit (the File itself stays)."""
        store = s.get(VectorStoreRow, row.vector_store_id)
        if store is not None:
            store.chunks_version += 1
            s.add(store)
        s.delete(row)
        store_id, file_id = row.vector_store_id, row.id
        delete_keywords_in(s, store_id, file_id)  # the keyword index is in this database: same transaction
        after_commit(s, lambda: self.chunks.delete_file(store_id, file_id))

    def content(self, project: str, store_id: str, file_id: str) -> FileContentPage:
        """The text extracted from the file, one item per page (or the whole text)."""
        with self.db.session() as s:
            row = self._row(s, project, store_id, file_id)
        if row.status != "completed":
            return FileContentPage(data=[])
        try:
            segments = self.extractor.extract(row.filename, self.blobs.path(file_id).read_bytes())
        except (OSError, IngestError):
            return FileContentPage(data=[])
        return FileContentPage(data=[TextContent(text=seg.text) for seg in segments])

    # ------------------------------------------------------------------------------------------ batches
    def create_batch(self, project: str, store_id: str, req: FileBatchCreate) -> VectorStoreFileBatchObject:
        with self.db.session() as s:
            store = get_store_row(s, project, store_id)
            oid = new_id(BATCH_PREFIX)
            created = created_at_of(oid, BATCH_PREFIX) or now()
            batch = VectorStoreFileBatchRow(
                id=oid, project=project, vector_store_id=store.id, created_at=created
            )
            s.add(batch)
            s.flush()
            form = "files" if req.files is not None else "file_ids"
            for i, spec in enumerate(req.specs()):
                param = f"files[{i}].file_id" if form == "files" else f"file_ids[{i}]"
                self.attach_in(s, store, spec, param, batch_id=oid)
            s.flush()
            return batch_object(s, batch)

    def _batch(self, s: Session, project: str, store_id: str, batch_id: str) -> VectorStoreFileBatchRow:
        get_store_row(s, project, store_id)
        row = s.get(VectorStoreFileBatchRow, batch_id)
        if row is None or row.vector_store_id != store_id:
            raise NotFound.of("file batch", batch_id)
        return row

    def get_batch(self, project: str, store_id: str, batch_id: str) -> VectorStoreFileBatchObject:
        with self.db.session() as s:
            return batch_object(s, self._batch(s, project, store_id, batch_id))

    def cancel_batch(self, project: str, store_id: str, batch_id: str) -> VectorStoreFileBatchObject:
        """Files of the batch not indexed yet become `cancelled` (the worker drops what it started)."""
        T = VectorStoreFileRow
        with self.db.session() as s:
            batch = self._batch(s, project, store_id, batch_id)
            pending = list(s.exec(select(T).where(T.batch_id == batch_id, T.status == "in_progress")))
            for row in pending:
                row.status, row.lease_until = "cancelled", None
                s.add(row)
            if batch.cancelled_at is None and pending:
                batch.cancelled_at = now()
                s.add(batch)
            s.flush()
            return batch_object(s, batch)

    def list_batch_files(
        self, project: str, store_id: str, batch_id: str, page: PageQuery, status: str | None = None
    ) -> ListPage[VectorStoreFileObject]:
        with self.db.session() as s:
            self._batch(s, project, store_id, batch_id)
        return self.list(project, store_id, page, status, batch_id=batch_id)


def page_files(s: Session, where: list[Any], page: PageQuery) -> ListPage[VectorStoreFileObject]:
    """Cursor pages of a store's files by (attach time, file id). The cursor is a file id of the store."""
    T = VectorStoreFileRow
    stmt = select(T).where(*where)

    def cursor(file_id: str, param: str) -> tuple[int, str]:
        row = s.exec(select(T).where(*where[:1], T.id == file_id)).first()
        if row is None:
            raise InvalidRequest(f"Invalid '{param}': no vector store file with id '{file_id}'.", param=param)
        return row.created_at, file_id

    def beyond(position: tuple[int, str], forward: bool) -> Any:
        created, ident = position
        if forward:
            return or_(T.created_at > created, and_(T.created_at == created, T.id > ident))
        return or_(T.created_at < created, and_(T.created_at == created, T.id < ident))

    forward = page.order == "asc"
    if page.after:
        stmt = stmt.where(beyond(cursor(page.after, "after"), forward))
    if page.before:
        stmt = stmt.where(beyond(cursor(page.before, "before"), not forward))
    reverse = bool(page.before and not page.after)
    ascending = forward != reverse
    order = (T.created_at.asc(), T.id.asc()) if ascending else (T.created_at.desc(), T.id.desc())
    rows = list(s.exec(stmt.order_by(*order).limit(page.limit + 1)))
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    if reverse:
        rows.reverse()
    data = [file_object(r) for r in rows]
    return ListPage[VectorStoreFileObject](
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )
