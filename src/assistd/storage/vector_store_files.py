from __future__ import annotations

from typing import Any

from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from assistd.storage.columns import json_field


class VectorStoreFileRow(SQLModel, table=True):
    """A File attached to a vector store (its id is the File id). Ingestion bookkeeping: the worker that
    holds it (`worker_id`, `lease_until` renewed while it works) and how many times it was started."""

    __tablename__ = "vector_store_files"
    __table_args__ = (
        Index("ix_vs_files_page", "vector_store_id", "created_at", "id"),
        Index("ix_vs_files_status", "status", "lease_until"),
        Index("ix_vs_files_file", "id"),
    )

    vector_store_id: str = Field(
        sa_column=Column(String, ForeignKey("vector_stores.id", ondelete="CASCADE"), primary_key=True)
    )
    id: str = Field(primary_key=True)
    project: str
    created_at: int
    filename: str = ""
    status: str = "in_progress"
    usage_bytes: int = 0
    chunk_count: int = 0
    last_error: dict[str, Any] | None = json_field()
    chunking_strategy: dict[str, Any] | None = json_field()
    attributes: dict[str, Any] | None = json_field()
    batch_id: str | None = Field(default=None, index=True)
    worker_id: str | None = None
    lease_until: float | None = None
    attempts: int = 0
