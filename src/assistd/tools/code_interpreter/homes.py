"""Kernel homes: which worker holds the live kernel of a thread (`kernel_homes`, one row per thread).

The run queue's claim sends a thread's next run to the worker its row names while that worker is alive, so
the row must be true: a worker writes it when a session of its own starts or runs code (`take`), deletes it
when the session ends (`release`), and looks periodically for its sessions whose thread was deleted or
whose row moved to another worker (`check`): those kernels are shut down. Every write is a short
transaction of its own, retried on transient database errors; times are the database's clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from assistd.storage.clock import db_now
from assistd.storage.db import Database
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.storage.retry import retrying
from assistd.storage.threads import ThreadRow

CHUNK = 500  # ids per IN list


class ThreadGone(Exception):
    """The thread no longer exists: it has no kernel home and runs no code."""


@dataclass(frozen=True)
class HomeCheck:
    """What the database says about some threads: which still exist, and the worker each home row names."""

    existing: frozenset[str]
    homes: dict[str, str]


class KernelHomes:
    def __init__(self, db: Database, worker_id: str) -> None:
        self.db = db
        self.worker_id = worker_id

    def _insert(self) -> Any:  # dialect-specific: ON CONFLICT
        return (postgresql if self.db.is_postgres else sqlite).insert(KernelHomeRow)

    def take(self, thread_id: str) -> str | None:
        """Makes this worker the thread's kernel home (updated_at refreshed); returns the worker the row
        named before (None: there was no row). Raises ThreadGone when the thread was deleted."""

        def attempt() -> str | None:
            try:
                with self.db.session() as s:
                    if s.get(ThreadRow, thread_id) is None:
                        raise ThreadGone(thread_id)
                    query = select(KernelHomeRow.worker_id).where(KernelHomeRow.thread_id == thread_id)
                    if self.db.is_postgres:
                        query = query.with_for_update()
                    previous = s.execute(query).scalar_one_or_none()
                    insert = self._insert().values(
                        thread_id=thread_id, worker_id=self.worker_id, updated_at=db_now()
                    )
                    s.execute(
                        insert.on_conflict_do_update(
                            index_elements=[KernelHomeRow.thread_id],
                            set_={"worker_id": self.worker_id, "updated_at": db_now()},
                        )
                    )
                    return previous
            except IntegrityError as exc:  # the thread was deleted between the read and the write
                raise ThreadGone(thread_id) from exc

        return retrying(attempt, what=f"kernel home of {thread_id}")

    def release(self, thread_id: str) -> None:
        """The session of this thread ended here: its row goes, unless it names another worker by now."""

        def attempt() -> None:
            with self.db.session() as s:
                s.execute(
                    delete(KernelHomeRow).where(
                        KernelHomeRow.thread_id == thread_id, KernelHomeRow.worker_id == self.worker_id
                    )
                )

        retrying(attempt, what=f"releasing the kernel home of {thread_id}")

    def release_all(self) -> None:
        """This worker stops: no row names it any more."""

        def attempt() -> None:
            with self.db.session() as s:
                s.execute(delete(KernelHomeRow).where(KernelHomeRow.worker_id == self.worker_id))

        retrying(attempt, what="releasing this worker's kernel homes", attempts=3)

    def check(self, thread_ids: Iterable[str]) -> HomeCheck:
        """Which of these threads still exist, and which worker each home row names (read only)."""
        ids = sorted(set(thread_ids))
        existing: set[str] = set()
        homes: dict[str, str] = {}
        with self.db.session() as s:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                existing.update(s.execute(select(ThreadRow.id).where(ThreadRow.id.in_(chunk))).scalars())
                rows = s.execute(
                    select(KernelHomeRow.thread_id, KernelHomeRow.worker_id).where(
                        KernelHomeRow.thread_id.in_(chunk)
                    )
                )
                homes.update({thread_id: worker_id for thread_id, worker_id in rows})
        return HomeCheck(existing=frozenset(existing), homes=homes)

    def adopt(self, thread_ids: Iterable[str]) -> None:
        """Writes the row of sessions held here that have none (a release raced with a new session, or a
        write was lost to an outage): only where no row exists and the thread does."""
        ids = sorted(set(thread_ids))
        if not ids:
            return
        source = select(ThreadRow.id, literal(self.worker_id), db_now()).where(ThreadRow.id.in_(ids))
        insert = self._insert().from_select(["thread_id", "worker_id", "updated_at"], source)
        try:
            with self.db.session() as s:
                s.execute(insert.on_conflict_do_nothing(index_elements=[KernelHomeRow.thread_id]))
        except IntegrityError:  # a thread deleted meanwhile: the next check closes its session
            return
