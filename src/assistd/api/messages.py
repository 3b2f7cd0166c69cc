from __future__ import annotations

from typing import Any

from litestar import Controller

from assistd.api.params import delete, get, post
from assistd.container import Container
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.messages import MessageCreate, MessageObject, MessageUpdate


class MessageController(Controller):
    path = "/threads/{thread_id:str}/messages"
    tags = ["Messages"]

    @post("/", body=MessageCreate)
    def create(self, svc: Container, project: str, thread_id: str, data: Any = None) -> MessageObject:
        return svc.messages.create(project, thread_id, MessageCreate.parse(data))

    @get("/")
    def list_(
        self, svc: Container, project: str, thread_id: str, page: PageQuery, run_id: str | None = None
    ) -> ListPage[MessageObject]:
        return svc.messages.list(project, thread_id, page, run_id)

    @get("/{message_id:str}")
    def retrieve(self, svc: Container, project: str, thread_id: str, message_id: str) -> MessageObject:
        return svc.messages.get(project, thread_id, message_id)

    @post("/{message_id:str}", body=MessageUpdate)
    def update(
        self, svc: Container, project: str, thread_id: str, message_id: str, data: Any = None
    ) -> MessageObject:
        return svc.messages.update(project, thread_id, message_id, MessageUpdate.parse(data))

    @delete("/{message_id:str}")
    def delete_(self, svc: Container, project: str, thread_id: str, message_id: str) -> Deleted:
        return svc.messages.delete(project, thread_id, message_id)
