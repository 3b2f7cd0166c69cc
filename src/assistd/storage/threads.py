from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, json_field, metadata_field


class ThreadRow(SQLModel, table=True):
    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_page", "project", "created_at", "id"),)

    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    tool_resources: dict[str, Any] | None = json_field()
    meta: dict[str, str] = metadata_field()
