from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from assistd.storage.columns import (
    BIG_INT,
    big_int_field,
    id_field,
    json_field,
    metadata_field,
    parent_fk,
    required_ref_field,
)


class ConversationRow(SQLModel, table=True):
    """A conversation of the Conversations API: items in order; responses made with it append theirs.
    `item_seq` is the last position given to one of its items."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_project", "project", "created_at", "id"),)

    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    meta: dict[str, str] = metadata_field()
    item_seq: int = big_int_field(0)


class ConversationItemRow(SQLModel, table=True):
    """An item of a conversation at position `seq` (lists page by it). `item_id` is the item's own id
    (`msg_…`, `fc_…`), unique within the conversation."""

    __tablename__ = "conversation_items"
    __table_args__ = (Index("ux_conversation_items_id", "conversation_id", "item_id", unique=True),)

    conversation_id: str = parent_fk("conversations.id", primary_key=True)
    seq: int = Field(primary_key=True, sa_type=BIG_INT)
    item_id: str = required_ref_field()
    type: str
    created_at: int = big_int_field()
    data: dict[str, Any] = json_field(dict, nullable=False)
