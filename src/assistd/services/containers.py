"""Containers: code interpreter sessions as a resource (the Containers API, and Responses' code_interpreter).

A container is a session of the code interpreter keyed by its id: its kernel starts on its first code (on
the worker that runs it), its files are rows of `container_files` with their bodies in the BlobStore, and
its kernel's /mnt/data holds them (`/mnt/data/<name>`). The rows are the truth: a kernel starting anywhere
gets them placed; after each execution the files the code wrote, changed or removed in /mnt/data are written
back (`source` assistant), and images it displayed become files too. Files uploaded or deleted through the
API reach a kernel live in this process at once; a kernel live on another worker is ended (its home is
reset) and the next code starts a new one with the files placed again.

A container idle for its `expires_after.minutes` (the database's clock, from `last_active_at`: its creation,
code runs, file changes) expires: status `expired`, its files deleted, its kernel shut down wherever it
lives. Expiry is applied when the container is next looked at, and by `purge_expired` (on create and list);
a kernel's worker also sees it in its home check.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, update
from sqlmodel import Session, select

from assistd.errors import InvalidRequest, NotFound
from assistd.ids import created_at_of, new_id
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.containers import (
    DEFAULT_EXPIRY_MINUTES,
    ContainerCreate,
    ContainerDeleted,
    ContainerExpiresAfter,
    ContainerFileDeleted,
    ContainerFileObject,
    ContainerObject,
)
from assistd.services.files import too_large
from assistd.services.pagination import paginate
from assistd.storage.blobs import BlobStore, BlobTooLarge
from assistd.storage.clock import db_now, read_now
from assistd.storage.containers import ContainerFileRow, ContainerRow
from assistd.storage.db import Database, after_commit
from assistd.storage.files import FileRow
from assistd.storage.notify import THREADS, notify
from assistd.tools.code_interpreter.files import safe_name, safe_path
from assistd.tools.code_interpreter.homes import running
from assistd.tools.code_interpreter.interpreter import CodeInterpreter, CodeInterpreterUnavailable

log = logging.getLogger("assistd.containers")

PREFIX = "cntr_"
FILE_PREFIX = "cfile_"
DATA = "/mnt/data/"
RESET_HOME = "-"  # a home no worker has: the worker holding the kernel ends it (its files changed)
AUTO_NAME = "auto"


@dataclass(frozen=True)
class ContainerFileRef:
    """A file of a container, as a citation names it."""

    file_id: str  # cfile_...
    filename: str  # the last component of its path
    path: str  # /mnt/data/...


@dataclass
class ContainerRun:
    """What one code execution in a container gave."""

    logs: str  # what the code printed, its traceback, notes of the sandbox (a timeout, a kernel restart)
    images: list[ContainerFileRef] = field(default_factory=list)  # PNGs it displayed, as container files
    files: list[ContainerFileRef] = field(default_factory=list)  # files it wrote or changed in /mnt/data
    error: bool = False  # it raised, timed out, or its kernel died

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """Logs then images, as a code interpreter call lists its outputs (images by container file id)."""
        found: list[dict[str, Any]] = [{"type": "logs", "logs": self.logs}] if self.logs else []
        return found + [{"type": "image", "file_id": image.file_id} for image in self.images]


def to_object(row: ContainerRow) -> ContainerObject:
    return ContainerObject(
        id=row.id,
        created_at=row.created_at,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]
        expires_after=ContainerExpiresAfter(minutes=row.expires_minutes),
        last_active_at=row.last_active_at,
        memory_limit=row.memory_limit,
    )


def file_object(row: ContainerFileRow) -> ContainerFileObject:
    return ContainerFileObject(
        id=row.id,
        bytes=row.bytes,
        container_id=row.container_id,
        created_at=row.created_at,
        path=row.path,
        source=row.source,
    )


def ref_of(row: ContainerFileRow) -> ContainerFileRef:
    return ContainerFileRef(file_id=row.id, filename=row.path.rsplit("/", 1)[-1], path=row.path)


class ContainerService:
    def __init__(
        self, db: Database, blobs: BlobStore, max_bytes: int, interpreter: CodeInterpreter | None
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.interpreter = interpreter  # None: containers hold files but run no code

    # ---- containers ----------------------------------------------------------------------------------
    def create(self, project: str, req: ContainerCreate) -> ContainerObject:
        if req.network_policy is not None and req.network_policy.type != "disabled":
            raise InvalidRequest(
                "Invalid 'network_policy': kernels have no network on this server; only 'disabled' is "
                "supported.",
                param="network_policy.type",
                code="unsupported_value",
            )
        minutes = req.expires_after.minutes if req.expires_after else DEFAULT_EXPIRY_MINUTES
        row = self._create(project, req.name, minutes, req.file_ids or [], "file_ids", req.memory_limit)
        self._purge_quietly()
        return to_object(row)

    def create_auto(
        self, project: str, file_ids: list[str], name: str | None = None, param: str = "file_ids"
    ) -> str:
        """A container for a code_interpreter tool with `container: {"type": "auto", "file_ids": [...]}`:
        the files copied in, expiring after 20 minutes idle as the hosted API's. Returns its id; a file id
        that is not a file of the project is a 400 naming `param[i]`."""
        return self._create(project, name or AUTO_NAME, DEFAULT_EXPIRY_MINUTES, file_ids, param, None).id

    def _create(
        self, project: str, name: str, minutes: int, file_ids: list[str], param: str, memory: str | None
    ) -> ContainerRow:
        cid = new_id(PREFIX)
        with self.db.session() as s:
            sources = self._files_of(s, project, file_ids, param)
        copied = self._copy_blobs(sources)
        try:
            with self.db.session() as s:
                row = ContainerRow(
                    id=cid,
                    project=project,
                    created_at=created_at_of(cid, PREFIX),
                    name=name,
                    expires_minutes=minutes,
                    last_active_at=int(read_now(s)),
                    memory_limit=memory,
                )
                s.add(row)
                s.flush()
                for fid, path, size, digest in copied:
                    s.add(self._file_row(cid, fid, path, size, digest, "user"))
                return row
        except BaseException:
            for fid, *_ in copied:
                self.blobs.delete(fid)
            raise

    def list(self, project: str, page: PageQuery, name: str | None = None) -> ListPage[ContainerObject]:
        self._purge_quietly()
        with self.db.session() as s:
            where = [ContainerRow.project == project]
            if name:
                where.append(ContainerRow.name == name)
            return paginate(s, ContainerRow, where, page, to_object, PREFIX)

    def get(self, project: str, container_id: str) -> ContainerObject:
        return to_object(self._current(project, container_id))

    def require(self, project: str, container_id: str, param: str = "container_id") -> ContainerObject:
        """The container, running: a 404 naming `param` when the project has no such container, a 400
        (`container_expired`) when it has expired."""
        row = self._current(project, container_id, param)
        if row.status != "running":
            raise _expired(container_id, param)
        return to_object(row)

    def alive(self, project: str, container_id: str) -> bool:
        """Whether the project's container is there and running (a response chain's `auto` container
        carries over while it is)."""
        try:
            return self._current(project, container_id).status == "running"
        except NotFound:
            return False

    def delete(self, project: str, container_id: str) -> ContainerDeleted:
        with self.db.session() as s:
            row = self._row(s, project, container_id)
            file_ids = list(
                s.exec(select(ContainerFileRow.id).where(ContainerFileRow.container_id == row.id))
            )
            s.delete(row)  # its files' rows go with it (cascade)
            notify(s, self.db, THREADS, container_id)  # wakes the home check of the worker of its kernel
        self._forget(container_id, file_ids)
        return ContainerDeleted(id=container_id)

    # ---- files ---------------------------------------------------------------------------------------
    def upload_file(
        self, project: str, container_id: str, filename: str, body: BinaryIO
    ) -> ContainerFileObject:
        """A file uploaded into the container at /mnt/data/<filename> (one already there is replaced)."""
        self.require(project, container_id)
        fid = new_id(FILE_PREFIX)
        try:
            size, digest = self.blobs.write(fid, body, self.max_bytes)
        except BlobTooLarge:
            raise too_large(self.max_bytes) from None
        return self._add_file(project, container_id, fid, DATA + safe_name(filename), size, digest)

    def add_file(self, project: str, container_id: str, file_id: str) -> ContainerFileObject:
        """A copy of an uploaded file (`file-...`) in the container at /mnt/data/<its filename>."""
        self.require(project, container_id)
        with self.db.session() as s:
            sources = self._files_of(s, project, [file_id], "file_id", indexed=False)
        ((fid, path, size, digest),) = self._copy_blobs(sources)
        return self._add_file(project, container_id, fid, path, size, digest)

    def _add_file(
        self, project: str, container_id: str, fid: str, path: str, size: int, digest: str
    ) -> ContainerFileObject:
        replaced: list[str] = []
        try:
            with self.db.session() as s:
                row = self._live_row(s, project, container_id)
                old = s.exec(
                    select(ContainerFileRow).where(
                        ContainerFileRow.container_id == container_id, ContainerFileRow.path == path
                    )
                ).first()
                if old is not None:
                    replaced.append(old.id)
                    s.delete(old)
                    s.flush()
                new = self._file_row(container_id, fid, path, size, digest, "user")
                s.add(new)
                row.last_active_at = int(read_now(s))
                obj = file_object(new)
        except BaseException:
            self.blobs.delete(fid)
            raise
        for old_id in replaced:
            self.blobs.delete(old_id)
        self._sync_kernel(container_id, lambda ci: ci.put_file(container_id, _rel(path), self._read(fid)))
        return obj

    def list_files(self, project: str, container_id: str, page: PageQuery) -> ListPage[ContainerFileObject]:
        row = self._current(project, container_id)
        with self.db.session() as s:
            where = [ContainerFileRow.container_id == row.id]
            return paginate(s, ContainerFileRow, where, page, file_object, FILE_PREFIX)

    def get_file(self, project: str, container_id: str, file_id: str) -> ContainerFileObject:
        self._current(project, container_id)
        with self.db.session() as s:
            return file_object(self._file_row_of(s, container_id, file_id))

    def file_content(self, project: str, container_id: str, file_id: str) -> tuple[Path, str]:
        """Where the file's body is, and its name."""
        obj = self.get_file(project, container_id, file_id)
        path = self.blobs.path(file_id)
        if not path.is_file():
            log.error("blob of container file %s is missing at %s", file_id, path)
            raise NotFound(
                f"The content of container file '{file_id}' is missing from this server's storage."
            )
        return path, obj.path.rsplit("/", 1)[-1]

    def delete_file(self, project: str, container_id: str, file_id: str) -> ContainerFileDeleted:
        self._current(project, container_id)
        with self.db.session() as s:
            row = self._live_row(s, project, container_id)
            file_row = self._file_row_of(s, container_id, file_id)
            path = file_row.path
            s.delete(file_row)
            row.last_active_at = int(read_now(s))
        self.blobs.delete(file_id)
        self._sync_kernel(container_id, lambda ci: ci.remove_file(container_id, _rel(path)))
        return ContainerFileDeleted(id=file_id)

    # ---- code ------------------------------------------------------------------------------------------
    def run_code(self, project: str, container_id: str, code: str) -> ContainerRun:
        """Runs `code` in the container's kernel (started on first use) with its files in /mnt/data, and
        writes back what the code wrote there. Raises NotFound (404, param container_id) for a container
        the project does not have, InvalidRequest (400, container_expired) for an expired one, and
        CodeInterpreterUnavailable (its message says why) where the server has no sandbox."""
        interpreter = self.interpreter
        if interpreter is None:
            raise CodeInterpreterUnavailable("code_interpreter is not available on this server")
        if (reason := interpreter.unavailable_reason()) is not None:  # no sandbox: it fails closed
            raise CodeInterpreterUnavailable(reason)
        with self.db.session() as s:
            row = self._live_row(s, project, container_id)
            row.last_active_at = int(read_now(s))
            inputs = [
                (f.id, _rel(f.path))
                for f in s.exec(select(ContainerFileRow).where(ContainerFileRow.container_id == container_id))
            ]
        files = [(rel, self._read(fid)) for fid, rel in inputs if self.blobs.path(fid).is_file()]
        result = interpreter.execute(project, container_id, code, files)
        run = ContainerRun(logs=result.logs, error=result.error)
        with contextlib.suppress(NotFound, InvalidRequest):  # deleted or expired meanwhile: nothing kept
            self._write_back(project, container_id, result.files, result.removed, result.images, run)
        return run

    def _write_back(
        self,
        project: str,
        container_id: str,
        written: list[tuple[str, bytes]],
        removed: list[str],
        images: list[bytes],
        run: ContainerRun,
    ) -> None:
        """The container's rows follow its /mnt/data: files written or changed (new rows `assistant`, or
        the body of the row at that path replaced), files removed; images displayed become files."""
        if not (written or removed or images):
            return
        blobs_made: list[str] = []
        gone: list[str] = []
        try:
            with self.db.session() as s:
                row = self._live_row(s, project, container_id)
                row.last_active_at = int(read_now(s))  # first: the row's lock orders concurrent write-backs
                s.flush()
                by_path = {
                    f.path: f
                    for f in s.exec(
                        select(ContainerFileRow).where(ContainerFileRow.container_id == container_id)
                    )
                }
                for rel, data in written:
                    path = DATA + rel
                    existing = by_path.get(path)
                    fid = existing.id if existing is not None else new_id(FILE_PREFIX)
                    size, digest = self.blobs.write_bytes(fid, data)
                    if existing is None:
                        blobs_made.append(fid)
                        existing = self._file_row(container_id, fid, path, size, digest, "assistant")
                        s.add(existing)
                    else:
                        existing.bytes, existing.sha256 = size, digest
                    run.files.append(ref_of(existing))
                for rel in removed:
                    existing = by_path.get(DATA + rel)
                    if existing is not None:
                        gone.append(existing.id)
                        s.delete(existing)
                for png in images:
                    fid = new_id(FILE_PREFIX)
                    size, digest = self.blobs.write_bytes(fid, png)
                    blobs_made.append(fid)
                    image = self._file_row(container_id, fid, f"{DATA}{fid}.png", size, digest, "assistant")
                    s.add(image)
                    run.images.append(ref_of(image))
        except BaseException:
            for fid in blobs_made:
                self.blobs.delete(fid)
            raise
        for fid in gone:
            self.blobs.delete(fid)

    # ---- expiry ----------------------------------------------------------------------------------------
    def purge_expired(self) -> int:
        """Expires the containers idle past their minutes (files deleted, kernels shut down); how many."""
        with self.db.session() as s:
            due = ContainerRow.last_active_at + ContainerRow.expires_minutes * 60 <= db_now()
            ids = list(s.exec(select(ContainerRow.id).where(ContainerRow.status == "running", due)))
        for container_id in ids:
            with self.db.session() as s:
                row = s.get(ContainerRow, container_id)
                if row is not None:
                    self._expire_if_due(s, row)
        return len(ids)

    def _purge_quietly(self) -> None:
        try:
            self.purge_expired()
        except Exception:
            log.exception("purging expired containers failed")

    def _expire_if_due(self, s: Session, row: ContainerRow) -> None:
        """Marks the container expired if it is past its minutes: its file rows go in this transaction,
        their bodies and its kernel right after it commits."""
        if row.status != "running" or running(row, read_now(s)):
            return
        file_ids = list(s.exec(select(ContainerFileRow.id).where(ContainerFileRow.container_id == row.id)))
        s.execute(delete(ContainerFileRow).where(ContainerFileRow.container_id == row.id))
        row.status, row.worker_id, row.home_at = "expired", None, None
        notify(s, self.db, THREADS, row.id)
        after_commit(s, lambda: self._forget(row.id, file_ids))
        log.info("container %s expired after %d minutes idle", row.id, row.expires_minutes)

    # ---- helpers ---------------------------------------------------------------------------------------
    def _row(self, s: Session, project: str, container_id: str, param: str = "container_id") -> ContainerRow:
        row = s.get(ContainerRow, container_id)
        if row is None or row.project != project:
            raise NotFound(f"No container found with id '{container_id}'.", param=param)
        return row

    def _current(self, project: str, container_id: str, param: str = "container_id") -> ContainerRow:
        """The container's row, expired first if it is due (its files and kernel then go)."""
        with self.db.session() as s:
            row = self._row(s, project, container_id, param)
            self._expire_if_due(s, row)
            return row

    def _live_row(self, s: Session, project: str, container_id: str) -> ContainerRow:
        row = self._row(s, project, container_id)
        if row.status != "running" or not running(row, read_now(s)):
            raise _expired(container_id, "container_id")
        return row

    def _forget(self, container_id: str, file_ids: list[str]) -> None:
        """After the rows went: the bodies, and the kernel if it lives here (elsewhere its worker's home
        check ends it)."""
        for fid in file_ids:
            self.blobs.delete(fid)
        if self.interpreter is not None:
            self.interpreter.close_session(container_id, release=False)

    def _sync_kernel(self, container_id: str, change: Callable[[CodeInterpreter], bool]) -> None:
        """Applies a file change to the container's kernel if it lives in this process; otherwise the
        kernel elsewhere (if any) is ended, so that the next code sees the container's files."""
        if self.interpreter is not None:
            try:
                if change(self.interpreter):
                    return
            except OSError as exc:
                log.warning(
                    "container %s: its kernel's /mnt/data could not follow a change: %s", container_id, exc
                )
                self.interpreter.close_session(container_id)
                return
        with self.db.session() as s:
            s.execute(
                update(ContainerRow)
                .where(ContainerRow.id == container_id, ContainerRow.worker_id.is_not(None))
                .values(worker_id=RESET_HOME)
            )
            notify(s, self.db, THREADS, container_id)

    def _files_of(
        self, s: Session, project: str, file_ids: list[str], param: str, indexed: bool = True
    ) -> list[tuple[str, str]]:
        """(file id, /mnt/data path) of uploaded files of the project; a 400 naming the first that is not."""
        rows = {
            r.id: r
            for r in s.exec(select(FileRow).where(FileRow.id.in_(file_ids), FileRow.project == project))
        }
        now = read_now(s)
        found = []
        for i, file_id in enumerate(file_ids):
            row = rows.get(file_id)
            if row is None or (row.expires_at is not None and row.expires_at <= now):
                where = f"{param}[{i}]" if indexed else param
                raise InvalidRequest(f"No file found with id '{file_id}'.", param=where)
            found.append((file_id, DATA + safe_name(row.filename)))
        return list({path: (fid, path) for fid, path in found}.values())  # one per path: the last

    def _copy_blobs(self, sources: list[tuple[str, str]]) -> list[tuple[str, str, int, str]]:
        """Copies of the files' bodies under new container file ids: (id, path, size, sha256)."""
        copied: list[tuple[str, str, int, str]] = []
        try:
            for file_id, path in sources:
                fid = new_id(FILE_PREFIX)
                source = self.blobs.path(file_id)
                if not source.is_file():  # lost outside the server: permanent, so not a (retried) 5xx
                    raise NotFound(f"The content of file '{file_id}' is missing from this server's storage.")
                with source.open("rb") as body:  # a copy of a file the server accepted: no size limit
                    size, digest = self.blobs.write(fid, body, limit=source.stat().st_size + 1)
                copied.append((fid, path, size, digest))
        except BaseException:
            for fid, *_ in copied:
                self.blobs.delete(fid)
            raise
        return copied

    @staticmethod
    def _file_row(cid: str, fid: str, path: str, size: int, digest: str, source: str) -> ContainerFileRow:
        return ContainerFileRow(
            id=fid,
            container_id=cid,
            created_at=created_at_of(fid, FILE_PREFIX),
            bytes=size,
            path=path,
            source=source,
            sha256=digest,
        )

    @staticmethod
    def _file_row_of(s: Session, container_id: str, file_id: str) -> ContainerFileRow:
        row = s.get(ContainerFileRow, file_id)
        if row is None or row.container_id != container_id:
            raise NotFound(f"No container file found with id '{file_id}'.", param="file_id")
        return row

    def _read(self, fid: str) -> bytes:
        return self.blobs.path(fid).read_bytes()


def _rel(path: str) -> str:
    return safe_path(path.removeprefix(DATA))


def _expired(container_id: str, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Container '{container_id}' has expired: it was idle past its expires_after minutes, and its "
        "files and kernel are gone. Create a new container.",
        param=param,
        code="container_expired",
    )
