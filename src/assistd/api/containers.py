from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import anyio
from litestar import Controller, Request
from litestar.exceptions import SerializationException
from litestar.response import File

from assistd.api.params import apost, delete, get, post
from assistd.container import Container
from assistd.errors import InvalidRequest, ServerError
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.containers import (
    ContainerCreate,
    ContainerDeleted,
    ContainerFileCreate,
    ContainerFileDeleted,
    ContainerFileObject,
    ContainerObject,
)
from assistd.services.containers import ContainerService
from assistd.services.files import too_large

MULTIPART_OVERHEAD = 64 * 1024


def containers(svc: Container) -> ContainerService:
    service = svc.extras.get("containers")
    if service is None:
        raise ServerError("Containers are not available on this server.")
    return service


class ContainerController(Controller):
    path = "/containers"
    tags = ["Containers"]

    @post("/", body=ContainerCreate)
    def create(self, svc: Container, project: str, data: Any = None) -> ContainerObject:
        return containers(svc).create(project, ContainerCreate.parse(data))

    @get("/")
    def list_(
        self, svc: Container, project: str, page: PageQuery, name: str | None = None
    ) -> ListPage[ContainerObject]:
        return containers(svc).list(project, page, name)

    @get("/{container_id:str}")
    def retrieve(self, svc: Container, project: str, container_id: str) -> ContainerObject:
        return containers(svc).get(project, container_id)

    @delete("/{container_id:str}")
    def delete_(self, svc: Container, project: str, container_id: str) -> ContainerDeleted:
        return containers(svc).delete(project, container_id)


class ContainerFileController(Controller):
    path = "/containers/{container_id:str}/files"
    tags = ["Containers"]

    @apost("/", body=ContainerFileCreate)
    async def create(
        self, request: Request, svc: Container, project: str, container_id: str
    ) -> ContainerFileObject:
        """A multipart `file` upload, or a JSON `file_id` of an uploaded file (documented: the JSON form)."""
        service = containers(svc)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            try:
                body = await request.json()
            except SerializationException as exc:
                raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from None
            req = ContainerFileCreate.parse(body)
            return await anyio.to_thread.run_sync(
                lambda: service.add_file(project, container_id, req.file_id)
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > service.max_bytes + MULTIPART_OVERHEAD:
            raise too_large(service.max_bytes)  # answered before any of the body is read or stored
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        if "\x00" in (upload.filename or ""):
            raise InvalidRequest(
                "Invalid 'file': names must not contain NUL characters (\\u0000).", param="file"
            )
        filename = PurePosixPath((upload.filename or "").replace("\\", "/")).name or "upload"
        return await anyio.to_thread.run_sync(
            lambda: service.upload_file(project, container_id, filename, upload.file)
        )

    @get("/")
    def list_(
        self, svc: Container, project: str, container_id: str, page: PageQuery
    ) -> ListPage[ContainerFileObject]:
        return containers(svc).list_files(project, container_id, page)

    @get("/{file_id:str}")
    def retrieve(self, svc: Container, project: str, container_id: str, file_id: str) -> ContainerFileObject:
        return containers(svc).get_file(project, container_id, file_id)

    @delete("/{file_id:str}")
    def delete_(self, svc: Container, project: str, container_id: str, file_id: str) -> ContainerFileDeleted:
        return containers(svc).delete_file(project, container_id, file_id)

    @get("/{file_id:str}/content", media_type="application/octet-stream")
    def content(self, svc: Container, project: str, container_id: str, file_id: str) -> File:
        path, filename = containers(svc).file_content(project, container_id, file_id)
        return File(path=path, filename=filename, media_type="application/octet-stream")


CONTAINER_CONTROLLERS = [ContainerController, ContainerFileController]
