from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, json_field, metadata_field


class AssistantRow(SQLModel, table=True):
    __tablename__ = "assistants"
    __table_args__ = (Index("ix_assistants_page", "project", "created_at", "id"),)

    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    name: str | None = None
    description: str | None = None
    model: str
    instructions: str | None = None
    tools: list[dict[str, Any]] = json_field(list, nullable=False)
    tool_resources: dict[str, Any] | None = json_field()
    meta: dict[str, str] = metadata_field()
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = json_field()
    reasoning_effort: str | None = None
