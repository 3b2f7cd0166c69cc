from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, json_field, metadata_field, parent_fk, ref_field


class MessageRow(SQLModel, table=True):
    """A thread message. `content` holds the OpenAI content parts as JSON, annotations included, so a run
    can write assistant messages with file citations and file paths."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_page", "thread_id", "created_at", "id"),
        Index("ix_messages_run", "run_id"),
    )

    id: str = id_field()
    project: str
    thread_id: str = parent_fk("threads.id", index=False)
    created_at: int = big_int_field()
    role: str
    content: list[dict[str, Any]] = json_field(list, nullable=False)
    status: str = "completed"
    incomplete_details: dict[str, Any] | None = json_field()
    completed_at: int | None = big_int_field(None)
    incomplete_at: int | None = big_int_field(None)
    assistant_id: str | None = ref_field()
    run_id: str | None = ref_field()
    attachments: list[dict[str, Any]] | None = json_field()
    meta: dict[str, str] = metadata_field()
