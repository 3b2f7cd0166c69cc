from __future__ import annotations

from sqlmodel import Field, SQLModel

from assistd.storage.columns import parent_fk


class VectorStoreFileBatchRow(SQLModel, table=True):
    """A file batch; its `file_counts` and status come from the vector store files that carry its id."""

    __tablename__ = "vector_store_file_batches"

    id: str = Field(primary_key=True)
    project: str
    vector_store_id: str = parent_fk("vector_stores.id")
    created_at: int
    cancelled_at: int | None = None
