from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import (
    big_int_field,
    id_field,
    json_field,
    metadata_field,
    parent_fk,
    required_ref_field,
)


class StepRow(SQLModel, table=True):
    __tablename__ = "run_steps"
    __table_args__ = (Index("ix_steps_page", "run_id", "created_at", "id"),)

    id: str = id_field()
    project: str
    run_id: str = parent_fk("runs.id", index=False)
    thread_id: str = required_ref_field()
    assistant_id: str = required_ref_field()
    created_at: int = big_int_field()
    type: str
    status: str = "in_progress"
    step_details: dict[str, Any] = json_field(dict, nullable=False)
    last_error: dict[str, Any] | None = json_field()
    expired_at: int | None = big_int_field(None)
    cancelled_at: int | None = big_int_field(None)
    failed_at: int | None = big_int_field(None)
    completed_at: int | None = big_int_field(None)
    meta: dict[str, str] = metadata_field()
    usage: dict[str, int] | None = json_field()
    # engine bookkeeping, never sent to clients (a file_search query and the text the model was shown)
    engine_state: dict[str, Any] | None = json_field()
