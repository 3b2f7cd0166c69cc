from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from assistd.storage.columns import json_field, metadata_field, parent_fk


class StepRow(SQLModel, table=True):
    __tablename__ = "run_steps"
    __table_args__ = (Index("ix_steps_page", "run_id", "created_at", "id"),)

    id: str = Field(primary_key=True)
    project: str
    run_id: str = parent_fk("runs.id", index=False)
    thread_id: str
    assistant_id: str
    created_at: int
    type: str
    status: str = "in_progress"
    step_details: dict[str, Any] = json_field(dict, nullable=False)
    last_error: dict[str, Any] | None = json_field()
    expired_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    meta: dict[str, str] = metadata_field()
    usage: dict[str, int] | None = json_field()
    # engine bookkeeping, never sent to clients (a file_search query and the text the model was shown)
    engine_state: dict[str, Any] | None = json_field()
