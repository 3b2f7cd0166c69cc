from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated

import anyio
from litestar import Controller, Request
from litestar.response import File

from assistd.api.openapi import Cursor, Order, documented
from assistd.api.params import apost, delete, get
from assistd.container import Container
from assistd.errors import InvalidRequest
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.files import FileDeleted, FileObject, UploadForm
from assistd.services.files import too_large

MAX_FILES_PAGE = 10_000
MULTIPART_OVERHEAD = 64 * 1024
FilesLimit = Annotated[
    str | None, documented(type="integer", minimum=1, maximum=MAX_FILES_PAGE, default=MAX_FILES_PAGE)
]


def files_page(limit: str | None = None, order: str | None = None, after: str | None = None) -> PageQuery:
    return PageQuery.from_query(limit or str(MAX_FILES_PAGE), order, after, None, max_limit=MAX_FILES_PAGE)


class FileController(Controller):
    path = "/files"
    tags = ["Files"]

    @apost("/", body=UploadForm, body_media="multipart/form-data")
    async def upload(self, request: Request, svc: Container, project: str) -> FileObject:
        limit = svc.files.max_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
            raise too_large(limit)  # answered before any of the body is read or stored
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidRequest("Uploads must be multipart/form-data with 'file' and 'purpose' parts.")
        form = await request.form()
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        if not purpose or not isinstance(purpose, str):
            raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
        if "\x00" in (upload.filename or "") or "\x00" in purpose:
            param = "purpose" if "\x00" in purpose else "file"
            raise InvalidRequest(
                f"Invalid '{param}': names must not contain NUL characters (\\u0000).", param=param
            )
        seconds = _expiry(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
        filename = PurePosixPath(upload.filename.replace("\\", "/")).name if upload.filename else ""
        filename = filename or "upload"  # the base name only, never a client's path
        return await anyio.to_thread.run_sync(
            lambda: svc.files.upload(project, filename, purpose, upload.file, seconds)
        )

    @get("/")
    def list_(
        self,
        svc: Container,
        project: str,
        limit: FilesLimit = None,
        order: Order = None,
        after: Cursor = None,
        purpose: str | None = None,
    ) -> ListPage[FileObject]:
        return svc.files.list(project, files_page(limit, order, after), purpose)

    @get("/{file_id:str}")
    def retrieve(self, svc: Container, project: str, file_id: str) -> FileObject:
        return svc.files.get(project, file_id)

    @delete("/{file_id:str}")
    def delete_(self, svc: Container, project: str, file_id: str) -> FileDeleted:
        return svc.files.delete(project, file_id)

    @get("/{file_id:str}/content", media_type="application/octet-stream")
    def content(self, svc: Container, project: str, file_id: str) -> File:
        path, filename = svc.files.content_path(project, file_id)
        return File(path=path, filename=filename, media_type="application/octet-stream")


def _expiry(anchor: object, seconds: object) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        message = "Invalid 'expires_after[anchor]': expected 'created_at'."
        raise InvalidRequest(message, param="expires_after.anchor")
    if not isinstance(seconds, str) or not seconds.isdigit():
        message = "Invalid 'expires_after[seconds]': expected an integer."
        raise InvalidRequest(message, param="expires_after.seconds")
    return int(seconds)
