"""The Conversations API's requests and objects. Items are read by protocol/items.py (`parse_items`) and
answered in their canonical form (plain dicts: the SDK's ConversationItem shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from assistd.protocol.base import Metadata, RequestModel

# Items one request may add (the hosted API's limit, on create and on items create).
MAX_ITEMS_PER_REQUEST = 20

Items = Annotated[list[dict[str, Any]], Field(max_length=MAX_ITEMS_PER_REQUEST)]


class ConversationCreate(RequestModel):
    items: Items | None = None
    metadata: Metadata = None


class ConversationUpdate(RequestModel):
    metadata: Metadata  # required, as the SDK's ConversationUpdateParams; null clears it


class ConversationItemsCreate(RequestModel):
    items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)]


class ThreadToConversation(RequestModel):
    """assistd's own `POST /v1/threads/{thread_id}/conversation`: without `metadata`, the conversation takes
    the thread's."""

    metadata: Metadata = None


class ConversationObject(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]
