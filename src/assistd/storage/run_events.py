from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from assistd.storage.columns import BIG_INT, json_field, parent_fk


class RunEventRow(SQLModel, table=True):
    """A run's stream events, numbered per run (`seq` from runs.event_seq, allocated under the run's row
    lock, so they commit in order): a stream on any node reads them in order, nothing lost or repeated.
    Kept a while after they are written (the maintenance sweep deletes old ones)."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_created", "created_at"),)

    run_id: str = parent_fk("runs.id", primary_key=True)
    seq: int = Field(primary_key=True, sa_type=BIG_INT)
    name: str
    data: Any = json_field()
    created_at: float
