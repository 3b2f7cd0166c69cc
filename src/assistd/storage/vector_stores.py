from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, json_field, metadata_field, ref_field


class VectorStoreRow(SQLModel, table=True):
    """A vector store. `file_counts` and `usage_bytes` are computed from its files when read, so they are
    always true; `chunks_version` grows whenever its chunks change (search caches key on it)."""

    __tablename__ = "vector_stores"
    __table_args__ = (Index("ix_vector_stores_page", "project", "created_at", "id"),)

    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    name: str = ""
    description: str | None = None
    last_active_at: int = big_int_field()
    expires_after: dict[str, Any] | None = json_field()
    meta: dict[str, str] = metadata_field()
    chunks_version: int = big_int_field(0)
    # the thread whose message attachments created this store (deleted with the thread)
    owner_thread_id: str | None = ref_field(index=True)
