from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, json_field


class FileRow(SQLModel, table=True):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_page", "project", "created_at", "id"),)

    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    bytes: int = big_int_field()
    filename: str
    purpose: str
    status: str = "processed"
    status_details: str | None = None
    expires_at: int | None = big_int_field(None)
    sha256: str | None = None
    extra: dict[str, Any] | None = json_field()
