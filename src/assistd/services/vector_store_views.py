"""Vector store rows -> protocol objects, with `file_counts`, `usage_bytes` and `status` computed from the
files at read time (never a stored counter that could drift)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from assistd.ids import now
from assistd.protocol.vector_stores import (
    FileCounts,
    VectorStoreFileBatchObject,
    VectorStoreFileObject,
    VectorStoreObject,
)
from assistd.storage.vector_store_batches import VectorStoreFileBatchRow
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.storage.vector_stores import VectorStoreRow

DAY = 86_400
STATUSES = ("in_progress", "completed", "failed", "cancelled")


def after_commit(s: Session, action: Callable[[], Any]) -> None:
    """Runs `action` once the caller's transaction commits (Chroma changes, waking the worker)."""
    from sqlalchemy import event

    event.listen(s, "after_commit", lambda _session: action(), once=True)


def expires_at(row: VectorStoreRow) -> int | None:
    if not row.expires_after:
        return None
    return row.last_active_at + int(row.expires_after["days"]) * DAY


def is_expired(row: VectorStoreRow) -> bool:
    at = expires_at(row)
    return at is not None and at <= now()


def tally(s: Session, column: Any, keys: list[str]) -> dict[str, tuple[FileCounts, int]]:
    """Per key (store or batch id): file counts by status and the bytes of its files."""
    out: dict[str, tuple[FileCounts, int]] = {}
    if not keys:
        return out
    T = VectorStoreFileRow
    query = (
        select(column, T.status, func.count(), func.coalesce(func.sum(T.usage_bytes), 0))
        .where(column.in_(keys))
        .group_by(column, T.status)
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    usage: dict[str, int] = defaultdict(int)
    for key, status, count, size in s.exec(query):
        counts[key][status] = int(count)
        usage[key] += int(size)
    for key in keys:
        by_status = counts.get(key, {})
        values = {name: by_status.get(name, 0) for name in STATUSES}
        out[key] = (FileCounts(**values, total=sum(values.values())), usage.get(key, 0))
    return out


def store_objects(s: Session, rows: list[VectorStoreRow]) -> list[VectorStoreObject]:
    stats = tally(s, VectorStoreFileRow.vector_store_id, [r.id for r in rows])
    return [store_object(row, *stats[row.id]) for row in rows]


def store_object(row: VectorStoreRow, counts: FileCounts, usage: int) -> VectorStoreObject:
    status = "expired" if is_expired(row) else "in_progress" if counts.in_progress else "completed"
    return VectorStoreObject(
        id=row.id,
        created_at=row.created_at,
        name=row.name,
        usage_bytes=usage,
        file_counts=counts,
        status=status,
        expires_after=row.expires_after,
        expires_at=expires_at(row),
        last_active_at=row.last_active_at,
        metadata=row.meta,
    )


def file_object(row: VectorStoreFileRow) -> VectorStoreFileObject:
    return VectorStoreFileObject(
        id=row.id,
        created_at=row.created_at,
        vector_store_id=row.vector_store_id,
        status=row.status,
        usage_bytes=row.usage_bytes,
        last_error=row.last_error,
        chunking_strategy=row.chunking_strategy or {"type": "other"},
        attributes=row.attributes or {},
    )


def batch_object(s: Session, row: VectorStoreFileBatchRow) -> VectorStoreFileBatchObject:
    counts, _ = tally(s, VectorStoreFileRow.batch_id, [row.id])[row.id]
    if row.cancelled_at is not None:
        status = "cancelled"
    else:
        status = "in_progress" if counts.in_progress else "completed"
    return VectorStoreFileBatchObject(
        id=row.id,
        created_at=row.created_at,
        vector_store_id=row.vector_store_id,
        status=status,
        file_counts=counts,
    )
