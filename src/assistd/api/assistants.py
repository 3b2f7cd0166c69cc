from __future__ import annotations

from typing import Any

from litestar import Controller

from assistd.api.params import delete, get, post
from assistd.container import Container
from assistd.protocol.assistants import AssistantCreate, AssistantObject, AssistantUpdate
from assistd.protocol.common import Deleted, ListPage, PageQuery


class AssistantController(Controller):
    path = "/assistants"
    tags = ["Assistants"]

    @post("/", body=AssistantCreate)
    def create(self, svc: Container, project: str, data: Any = None) -> AssistantObject:
        return svc.assistants.create(project, AssistantCreate.parse(data))

    @get("/")
    def list_(self, svc: Container, project: str, page: PageQuery) -> ListPage[AssistantObject]:
        return svc.assistants.list(project, page)

    @get("/{assistant_id:str}")
    def retrieve(self, svc: Container, project: str, assistant_id: str) -> AssistantObject:
        return svc.assistants.get(project, assistant_id)

    @post("/{assistant_id:str}", body=AssistantUpdate)
    def update(self, svc: Container, project: str, assistant_id: str, data: Any = None) -> AssistantObject:
        return svc.assistants.update(project, assistant_id, AssistantUpdate.parse(data))

    @delete("/{assistant_id:str}")
    def delete_(self, svc: Container, project: str, assistant_id: str) -> Deleted:
        return svc.assistants.delete(project, assistant_id)
