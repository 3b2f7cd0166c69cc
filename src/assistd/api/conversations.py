"""The Conversations API (`/v1/conversations`, items included) and assistd's copy of a thread into a new
conversation (`POST /v1/threads/{thread_id}/conversation`)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request

from assistd.api.openapi import query_param
from assistd.api.params import delete, get, post
from assistd.container import Container
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.conversations import (
    ConversationCreate,
    ConversationItemsCreate,
    ConversationObject,
    ConversationUpdate,
    ThreadToConversation,
)
from assistd.protocol.items import INCLUDABLE, check_include

# What item reads may include: the SDK sends `include[]`, a plain `include` works too.
INCLUDE = [query_param("include[]", type="array", items={"type": "string", "enum": list(INCLUDABLE)})]


def includes(request: Request) -> tuple[str, ...]:
    params = request.query_params
    return check_include([*params.getall("include[]", []), *params.getall("include", [])])


class ConversationController(Controller):
    path = "/conversations"
    tags = ["Conversations"]

    @post("/", body=ConversationCreate)
    def create(self, svc: Container, project: str, data: Any = None) -> ConversationObject:
        return svc.conversations.create(project, ConversationCreate.parse(data))

    @get("/{conversation_id:str}")
    def retrieve(self, svc: Container, project: str, conversation_id: str) -> ConversationObject:
        return svc.conversations.get(project, conversation_id)

    @post("/{conversation_id:str}", body=ConversationUpdate)
    def update(
        self, svc: Container, project: str, conversation_id: str, data: Any = None
    ) -> ConversationObject:
        return svc.conversations.update(project, conversation_id, ConversationUpdate.parse(data))

    @delete("/{conversation_id:str}")
    def delete_(self, svc: Container, project: str, conversation_id: str) -> Deleted:
        return svc.conversations.delete(project, conversation_id)

    @get("/{conversation_id:str}/items", query=INCLUDE)
    def list_items(
        self, svc: Container, project: str, conversation_id: str, page: PageQuery, request: Request
    ) -> ListPage[dict[str, Any]]:
        return svc.conversations.list_items(project, conversation_id, page, includes(request))

    @post("/{conversation_id:str}/items", body=ConversationItemsCreate, query=INCLUDE)
    def create_items(
        self, svc: Container, project: str, conversation_id: str, request: Request, data: Any = None
    ) -> ListPage[dict[str, Any]]:
        req = ConversationItemsCreate.parse(data)
        return svc.conversations.add_items(project, conversation_id, req, includes(request))

    @get("/{conversation_id:str}/items/{item_id:str}", query=INCLUDE)
    def retrieve_item(
        self, svc: Container, project: str, conversation_id: str, item_id: str, request: Request
    ) -> dict[str, Any]:
        return svc.conversations.get_item(project, conversation_id, item_id, includes(request))

    @delete("/{conversation_id:str}/items/{item_id:str}")
    def delete_item(
        self, svc: Container, project: str, conversation_id: str, item_id: str
    ) -> ConversationObject:
        return svc.conversations.delete_item(project, conversation_id, item_id)


class ThreadConversationController(Controller):
    path = "/threads/{thread_id:str}/conversation"
    tags = ["Conversations"]

    @post("/", body=ThreadToConversation)
    def create(self, svc: Container, project: str, thread_id: str, data: Any = None) -> ConversationObject:
        req = ThreadToConversation.parse(data)
        return svc.conversations.from_thread(project, thread_id, req).conversation


CONVERSATION_CONTROLLERS = [ConversationController, ThreadConversationController]
