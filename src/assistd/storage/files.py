from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from assistd.storage.columns import json_field


class FileRow(SQLModel, table=True):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_page", "project", "created_at", "id"),)

    id: str = Field(primary_key=True)
    project: str
    created_at: int
    bytes: int
    filename: str
    purpose: str
    status: str = "processed"
    status_details: str | None = None
    expires_at: int | None = None
    sha256: str | None = None
    extra: dict[str, Any] | None = json_field()
