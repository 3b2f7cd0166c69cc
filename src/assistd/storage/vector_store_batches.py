from __future__ import annotations

from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, parent_fk


class VectorStoreFileBatchRow(SQLModel, table=True):
    """A file batch; its `file_counts` and status come from the vector store files that carry its id."""

    __tablename__ = "vector_store_file_batches"

    id: str = id_field()
    project: str
    vector_store_id: str = parent_fk("vector_stores.id")
    created_at: int = big_int_field()
    cancelled_at: int | None = big_int_field(None)
