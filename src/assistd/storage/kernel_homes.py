from __future__ import annotations

from sqlmodel import SQLModel

from assistd.storage.columns import parent_fk, required_ref_field


class KernelHomeRow(SQLModel, table=True):
    """Which worker holds the live code interpreter kernel of a thread: the thread's next run goes there
    while that worker is alive (the run queue's claim affinity)."""

    __tablename__ = "kernel_homes"

    thread_id: str = parent_fk("threads.id", primary_key=True)
    worker_id: str = required_ref_field(index=True)
    updated_at: float
