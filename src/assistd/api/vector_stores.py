from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller
from litestar.datastructures import ResponseHeader

from assistd.api.openapi import documented
from assistd.api.params import delete, get, post
from assistd.container import Container
from assistd.errors import ServerError
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.vector_stores import (
    FileBatchCreate,
    FileContentPage,
    SearchPage,
    VectorStoreCreate,
    VectorStoreFileBatchObject,
    VectorStoreFileCreate,
    VectorStoreFileObject,
    VectorStoreFileUpdate,
    VectorStoreObject,
    VectorStoreSearch,
    VectorStoreUpdate,
)
from assistd.services.vector_store_files import FILE_STATUSES
from assistd.services.vector_stores import VectorStoreService

# The SDK's poll helpers wait this long between GETs (default 1 s); indexing a small file takes less.
POLL_FAST = [ResponseHeader(name="openai-poll-after-ms", value="250")]
StatusFilter = Annotated[str | None, documented(type="string", enum=list(FILE_STATUSES))]


def stores(svc: Container) -> VectorStoreService:
    service = svc.extras.get("file_search")
    if service is None:
        raise ServerError("file_search is not available on this server.")
    return service


class VectorStoreController(Controller):
    path = "/vector_stores"
    tags = ["Vector stores"]

    @post("/", body=VectorStoreCreate)
    def create(self, svc: Container, project: str, data: Any = None) -> VectorStoreObject:
        return stores(svc).create(project, VectorStoreCreate.parse(data))

    @get("/")
    def list_(self, svc: Container, project: str, page: PageQuery) -> ListPage[VectorStoreObject]:
        return stores(svc).list(project, page)

    @get("/{vector_store_id:str}", response_headers=POLL_FAST)
    def retrieve(self, svc: Container, project: str, vector_store_id: str) -> VectorStoreObject:
        return stores(svc).get(project, vector_store_id)

    @post("/{vector_store_id:str}", body=VectorStoreUpdate)
    def update(
        self, svc: Container, project: str, vector_store_id: str, data: Any = None
    ) -> VectorStoreObject:
        return stores(svc).update(project, vector_store_id, VectorStoreUpdate.parse(data))

    @delete("/{vector_store_id:str}")
    def delete_(self, svc: Container, project: str, vector_store_id: str) -> Deleted:
        return stores(svc).delete(project, vector_store_id)

    @post("/{vector_store_id:str}/search", body=VectorStoreSearch)
    def search(self, svc: Container, project: str, vector_store_id: str, data: Any = None) -> SearchPage:
        return stores(svc).search_store(project, vector_store_id, VectorStoreSearch.parse(data))


class VectorStoreFileController(Controller):
    path = "/vector_stores/{vector_store_id:str}/files"
    tags = ["Vector stores"]

    @post("/", body=VectorStoreFileCreate)
    def create(
        self, svc: Container, project: str, vector_store_id: str, data: Any = None
    ) -> VectorStoreFileObject:
        return stores(svc).files.create(project, vector_store_id, VectorStoreFileCreate.parse(data))

    @get("/")
    def list_(
        self, svc: Container, project: str, vector_store_id: str, page: PageQuery, filter: StatusFilter = None
    ) -> ListPage[VectorStoreFileObject]:
        return stores(svc).files.list(project, vector_store_id, page, filter)

    @get("/{file_id:str}", response_headers=POLL_FAST)
    def retrieve(
        self, svc: Container, project: str, vector_store_id: str, file_id: str
    ) -> VectorStoreFileObject:
        return stores(svc).files.get(project, vector_store_id, file_id)

    @post("/{file_id:str}", body=VectorStoreFileUpdate)
    def update(
        self, svc: Container, project: str, vector_store_id: str, file_id: str, data: Any = None
    ) -> VectorStoreFileObject:
        req = VectorStoreFileUpdate.parse(data)
        return stores(svc).files.update(project, vector_store_id, file_id, req)

    @delete("/{file_id:str}")
    def delete_(self, svc: Container, project: str, vector_store_id: str, file_id: str) -> Deleted:
        return stores(svc).files.delete(project, vector_store_id, file_id)

    @get("/{file_id:str}/content")
    def content(self, svc: Container, project: str, vector_store_id: str, file_id: str) -> FileContentPage:
        return stores(svc).files.content(project, vector_store_id, file_id)


class FileBatchController(Controller):
    path = "/vector_stores/{vector_store_id:str}/file_batches"
    tags = ["Vector stores"]

    @post("/", body=FileBatchCreate)
    def create(
        self, svc: Container, project: str, vector_store_id: str, data: Any = None
    ) -> VectorStoreFileBatchObject:
        return stores(svc).files.create_batch(project, vector_store_id, FileBatchCreate.parse(data))

    @get("/{batch_id:str}", response_headers=POLL_FAST)
    def retrieve(
        self, svc: Container, project: str, vector_store_id: str, batch_id: str
    ) -> VectorStoreFileBatchObject:
        return stores(svc).files.get_batch(project, vector_store_id, batch_id)

    @post("/{batch_id:str}/cancel")
    def cancel(
        self, svc: Container, project: str, vector_store_id: str, batch_id: str
    ) -> VectorStoreFileBatchObject:
        return stores(svc).files.cancel_batch(project, vector_store_id, batch_id)

    @get("/{batch_id:str}/files")
    def list_files(
        self,
        svc: Container,
        project: str,
        vector_store_id: str,
        batch_id: str,
        page: PageQuery,
        filter: StatusFilter = None,
    ) -> ListPage[VectorStoreFileObject]:
        return stores(svc).files.list_batch_files(project, vector_store_id, batch_id, page, filter)


VECTOR_STORE_CONTROLLERS = [VectorStoreController, VectorStoreFileController, FileBatchController]
