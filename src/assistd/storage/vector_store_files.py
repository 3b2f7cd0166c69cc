from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, json_field, parent_fk, ref_field


class VectorStoreFileRow(SQLModel, table=True):
    """A File attached to a vector store (its id is the File id). Ingestion bookkeeping (the queue of
    services/ingest_queue.py): the worker that holds it (`worker_id`, `lease_until` on the database's clock,
    renewed while it works), `epoch` (+1 on every claim: every write of a worker is fenced by worker_id and
    epoch), `attempts` (claims that ended without an outcome: crashes), `retries` (transient failures: Chroma
    or the database unreachable) and `not_before` (a retried file waits until then, database clock)."""

    __tablename__ = "vector_store_files"
    __table_args__ = (
        Index("ix_vs_files_page", "vector_store_id", "created_at", "id"),
        Index("ix_vs_files_status", "status", "lease_until"),
        Index("ix_vs_files_file", "id"),
    )

    vector_store_id: str = parent_fk("vector_stores.id", primary_key=True)
    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    filename: str = ""
    status: str = "in_progress"
    usage_bytes: int = big_int_field(0)
    chunk_count: int = big_int_field(0)
    last_error: dict[str, Any] | None = json_field()
    chunking_strategy: dict[str, Any] | None = json_field()
    attributes: dict[str, Any] | None = json_field()
    batch_id: str | None = ref_field(index=True)
    worker_id: str | None = ref_field()
    lease_until: float | None = None
    attempts: int = big_int_field(0)
    epoch: int = big_int_field(0)
    retries: int = big_int_field(0)
    not_before: float | None = None
