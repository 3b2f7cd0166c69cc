from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, SQLModel


class KernelHomeRow(SQLModel, table=True):
    """Which worker holds the live code interpreter kernel of a thread: the thread's next run goes there
    while that worker is alive (the run queue's claim affinity)."""

    __tablename__ = "kernel_homes"

    thread_id: str = Field(
        sa_column=Column(String, ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True)
    )
    worker_id: str = Field(index=True)
    updated_at: float
