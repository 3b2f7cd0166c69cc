from __future__ import annotations

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from assistd.storage.columns import BIG_INT, big_int_field


class UsageEventRow(SQLModel, table=True):
    """Something a project used that is counted apart from tokens (a code interpreter session)."""

    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_project_kind_time", "project", "kind", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_INT)
    project: str
    kind: str
    created_at: int = big_int_field()
    ref: str | None = None  # what it is about (a thread id)
