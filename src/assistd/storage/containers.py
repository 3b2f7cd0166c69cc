from __future__ import annotations

from sqlalchemy import Index
from sqlmodel import SQLModel

from assistd.storage.columns import big_int_field, id_field, parent_fk, ref_field


class ContainerRow(SQLModel, table=True):
    """A container of the Containers API: a code interpreter session (its kernel, its /mnt/data) that
    expires `expires_minutes` after `last_active_at` (the database's clock). `worker_id` is the worker
    holding its live kernel, if any (its kernel home: a container's next code runs there while it lives);
    `home_at` when that was written."""

    __tablename__ = "containers"
    __table_args__ = (
        Index("ix_containers_project", "project", "created_at", "id"),
        Index("ix_containers_status", "status", "last_active_at"),
    )

    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    name: str
    status: str = "running"  # running | expired
    expires_minutes: int = big_int_field()
    last_active_at: int = big_int_field()
    memory_limit: str | None = None
    worker_id: str | None = ref_field(index=True)
    home_at: float | None = None


class ContainerFileRow(SQLModel, table=True):
    """A file of a container at `path` (/mnt/data/<name>, one per path): uploaded (`source` user) or written
    by the container's code (`assistant`). Its body is in the BlobStore under its id."""

    __tablename__ = "container_files"
    __table_args__ = (
        Index("ix_container_files_page", "container_id", "created_at", "id"),
        Index("ux_container_files_path", "container_id", "path", unique=True),
    )

    id: str = id_field()
    container_id: str = parent_fk("containers.id", index=False)
    created_at: int = big_int_field()
    bytes: int = big_int_field()
    path: str
    source: str
    sha256: str | None = None
