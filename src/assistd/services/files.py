from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import or_
from sqlmodel import Session, select

from assistd.errors import InvalidRequest, NotFound, PayloadTooLarge
from assistd.ids import created_at_of, new_id, now
from assistd.images import BadImage
from assistd.images.limits import megabytes
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.files import MAX_EXPIRY, MIN_EXPIRY, UPLOAD_PURPOSES, FileDeleted, FileObject
from assistd.services.pagination import paginate
from assistd.storage.blobs import BlobStore, BlobTooLarge
from assistd.storage.db import Database
from assistd.storage.files import FileRow

log = logging.getLogger("assistd.files")

PREFIX = "file-"

# Called inside the deleting transaction (vector stores detach the file and drop its chunks).
FileDeleteHook = Callable[[Session, FileRow], None]


def to_object(row: FileRow) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
        status=row.status,
        expires_at=row.expires_at,
        status_details=row.status_details,
    )


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"File is too large: the largest accepted upload is {limit} bytes ({limit // (1024 * 1024)} MB).",
        param="file",
        code="file_too_large",
    )


class FileService:
    def __init__(self, db: Database, blobs: BlobStore, max_bytes: int) -> None:
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.delete_hooks: list[FileDeleteHook] = []
        # checks an upload with purpose `vision` (its bytes): raises BadImage for what is not a usable image
        self.image_check: Callable[[bytes], object] | None = None
        self.image_max_bytes = 20 * 1024 * 1024

    def upload(
        self,
        project: str,
        filename: str,
        purpose: str,
        body: BinaryIO,
        expires_after_seconds: int | None = None,
    ) -> FileObject:
        if purpose not in UPLOAD_PURPOSES:
            allowed = ", ".join(f"'{p}'" for p in UPLOAD_PURPOSES)
            raise InvalidRequest(
                f"Invalid value for 'purpose': '{purpose}'. Supported values are: {allowed}.", param="purpose"
            )
        if expires_after_seconds is not None and not MIN_EXPIRY <= expires_after_seconds <= MAX_EXPIRY:
            raise InvalidRequest(
                f"Invalid 'expires_after[seconds]': expected {MIN_EXPIRY} to {MAX_EXPIRY}.",
                param="expires_after.seconds",
            )
        declared = _size_of(body)
        if declared is not None and declared > self.max_bytes:
            raise too_large(self.max_bytes)  # refused before anything is written
        oid = new_id(PREFIX)
        try:
            size, digest = self.blobs.write(oid, body, self.max_bytes)
        except BlobTooLarge:
            raise too_large(self.max_bytes) from None
        if purpose == "vision" and self.image_check is not None:
            try:
                if size > self.image_max_bytes:  # refused before it is read
                    raise BadImage(f"The image is larger than {megabytes(self.image_max_bytes)}")
                self.image_check(self.blobs.path(oid).read_bytes())
            except BadImage as exc:
                self.blobs.delete(oid)
                raise InvalidRequest(f"The file is not a usable image: {exc}", param="file") from None
        created = self.register(project, oid, filename, purpose, size, digest, expires_after_seconds)
        try:  # expired files are hidden at once; their rows and blobs go here, best effort
            self.purge_expired()
        except Exception:
            log.exception("purging expired files failed")
        return created

    def create_from_bytes(self, project: str, filename: str, purpose: str, data: bytes) -> FileObject:
        """A file made by the server itself (code interpreter outputs: purpose assistants_output)."""
        oid = new_id(PREFIX)
        size, digest = self.blobs.write_bytes(oid, data)
        return self.register(project, oid, filename, purpose, size, digest, None)

    def register(
        self, project: str, oid: str, filename: str, purpose: str, size: int, digest: str, expires: int | None
    ) -> FileObject:
        created = created_at_of(oid, PREFIX)
        try:
            with self.db.session() as s:
                row = FileRow(
                    id=oid,
                    project=project,
                    created_at=created,
                    bytes=size,
                    filename=filename,
                    purpose=purpose,
                    status="processed",
                    expires_at=created + expires if expires else None,
                    sha256=digest,
                )
                s.add(row)
                return to_object(row)
        except BaseException:
            self.blobs.delete(oid)
            raise

    def _row(self, s: Session, project: str, file_id: str, expired_too: bool = False) -> FileRow:
        row = s.get(FileRow, file_id)
        if row is None or row.project != project or (not expired_too and _expired(row)):
            raise NotFound.of("file", file_id)
        return row

    def get(self, project: str, file_id: str) -> FileObject:
        with self.db.session() as s:
            return to_object(self._row(s, project, file_id))

    def list(self, project: str, page: PageQuery, purpose: str | None = None) -> ListPage[FileObject]:
        with self.db.session() as s:
            where = [
                FileRow.project == project,
                or_(FileRow.expires_at.is_(None), FileRow.expires_at > now()),
            ]  # type: ignore[union-attr]
            if purpose:
                where.append(FileRow.purpose == purpose)
            return paginate(s, FileRow, where, page, to_object, PREFIX)

    def delete(self, project: str, file_id: str) -> FileDeleted:
        with self.db.session() as s:
            row = self._row(s, project, file_id, expired_too=True)
            for hook in self.delete_hooks:
                hook(s, row)
            s.delete(row)
        self.blobs.delete(file_id)
        return FileDeleted(id=file_id)

    def content_path(self, project: str, file_id: str) -> tuple[Path, str]:
        with self.db.session() as s:
            row = self._row(s, project, file_id)
        path = self.blobs.path(file_id)
        if not path.is_file():  # lost outside the server: permanent, so not a (retried) 5xx
            log.error("blob of file %s is missing at %s", file_id, path)
            raise NotFound(f"The content of file '{file_id}' is missing from this server's storage.")
        return path, row.filename

    def purge_expired(self) -> int:
        """Deletes files past their `expires_at`; returns how many went."""
        with self.db.session() as s:
            expired = FileRow.expires_at.is_not(None) & (FileRow.expires_at <= now())  # type: ignore[union-attr]
            rows = list(s.exec(select(FileRow).where(expired)))
        for row in rows:
            with contextlib.suppress(NotFound):  # deleted meanwhile
                self.delete(row.project, row.id)
        return len(rows)


def _size_of(body: BinaryIO) -> int | None:
    """The bytes left in a seekable body (an upload spooled by the web framework), else None."""
    try:
        if not body.seekable():
            return None
        start = body.tell()
        end = body.seek(0, 2)
        body.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return end - start


def _expired(row: FileRow) -> bool:
    return row.expires_at is not None and row.expires_at <= now()
