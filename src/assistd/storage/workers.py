from __future__ import annotations

from sqlmodel import SQLModel

from assistd.storage.columns import id_field


class WorkerRow(SQLModel, table=True):
    """A worker process sharing the database. It is alive while `lease_until` (database clock) is ahead: it
    renews it every few seconds. Nothing trusts hostnames or pids: a worker that stops renewing is dead."""

    __tablename__ = "workers"

    id: str = id_field()
    role: str = "all"
    started_at: float
    lease_until: float
