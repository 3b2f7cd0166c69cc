"""Kernel homes: which worker holds the live kernel of a session, by session key: a thread's in
`kernel_homes` (one row per thread), a container's on its own row (`containers.worker_id`).

A thread's next run is claimed by the worker its row names while that worker is alive, so the row must be
true: a worker writes it when a session of its own starts or runs code (`take`), deletes it when the session
ends (`release`), and looks periodically for its sessions whose thread or container is gone (deleted, or the
container expired) or whose row moved to another worker (`check`): those kernels are shut down. Every write
is a short transaction of its own, retried on transient database errors; times are the database's clock.
`KeyedHomes` sends each key to its kind's homes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from assistd.storage.clock import db_now, read_now
from assistd.storage.containers import ContainerRow
from assistd.storage.db import Database
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.storage.retry import retrying
from assistd.storage.threads import ThreadRow

CHUNK = 500  # ids per IN list
CONTAINER_PREFIX = "cntr_"

KERNEL_MOVED = (
    "The kernel of this thread was on another worker, which is gone or no longer holds it. A new kernel "
    "was started: variables and imports are lost, and so are files written to /mnt/data (the thread's "
    "input files are placed again)."
)
CONTAINER_MOVED = (
    "The kernel of this container was on another worker, which is gone or no longer holds it, or the "
    "container's files changed there. A new kernel was started: variables and imports are lost; the "
    "container's files are in /mnt/data."
)


class SessionGone(Exception):
    """The session's thread or container no longer exists: it has no kernel home and runs no code."""

    note = "The session's thread or container is gone: its code interpreter session ended."


class ThreadGone(SessionGone):
    note = "The thread was deleted: its code interpreter session ended."


class ContainerGone(SessionGone):
    note = "The container was deleted or has expired: its code interpreter session ended."


@dataclass(frozen=True)
class HomeCheck:
    """What the database says about some sessions: which still exist, and the worker each home names."""

    existing: frozenset[str]
    homes: dict[str, str]


class Homes(Protocol):
    worker_id: str

    def take(self, key: str) -> str | None: ...
    def release(self, key: str) -> None: ...
    def release_all(self) -> None: ...
    def check(self, keys: Iterable[str]) -> HomeCheck: ...
    def adopt(self, keys: Iterable[str]) -> None: ...
    def moved_note(self, key: str) -> str: ...


class KernelHomes:
    """Threads' homes (`kernel_homes`)."""

    def __init__(self, db: Database, worker_id: str) -> None:
        self.db = db
        self.worker_id = worker_id

    def moved_note(self, key: str) -> str:
        return KERNEL_MOVED

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


class ContainerHomes:
    """Containers' homes: `containers.worker_id`. A container that expired is gone, as a deleted one."""

    def __init__(self, db: Database, worker_id: str) -> None:
        self.db = db
        self.worker_id = worker_id

    def moved_note(self, key: str) -> str:
        return CONTAINER_MOVED

    def take(self, container_id: str) -> str | None:
        """Makes this worker the container's kernel home; returns the worker it named before (None: no
        kernel anywhere). Raises ContainerGone when the container was deleted or has expired."""

        def attempt() -> str | None:
            with self.db.session() as s:
                query = select(ContainerRow).where(ContainerRow.id == container_id)
                if self.db.is_postgres:
                    query = query.with_for_update()
                row = s.execute(query).scalar_one_or_none()
                now = read_now(s)
                if row is None or not running(row, now):
                    raise ContainerGone(container_id)
                previous = row.worker_id
                row.worker_id, row.home_at = self.worker_id, now
                return previous

        return retrying(attempt, what=f"kernel home of {container_id}")

    def release(self, container_id: str) -> None:
        def attempt() -> None:
            with self.db.session() as s:
                s.execute(
                    update(ContainerRow)
                    .where(ContainerRow.id == container_id, ContainerRow.worker_id == self.worker_id)
                    .values(worker_id=None, home_at=None)
                )

        retrying(attempt, what=f"releasing the kernel home of {container_id}")

    def release_all(self) -> None:
        def attempt() -> None:
            with self.db.session() as s:
                s.execute(
                    update(ContainerRow)
                    .where(ContainerRow.worker_id == self.worker_id)
                    .values(worker_id=None, home_at=None)
                )

        retrying(attempt, what="releasing this worker's container kernels", attempts=3)

    def check(self, container_ids: Iterable[str]) -> HomeCheck:
        ids = sorted(set(container_ids))
        existing: set[str] = set()
        homes: dict[str, str] = {}
        with self.db.session() as s:
            now = read_now(s)
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                for row in s.execute(select(ContainerRow).where(ContainerRow.id.in_(chunk))).scalars():
                    if running(row, now):
                        existing.add(row.id)
                    if row.worker_id is not None:
                        homes[row.id] = row.worker_id
        return HomeCheck(existing=frozenset(existing), homes=homes)

    def adopt(self, container_ids: Iterable[str]) -> None:
        ids = sorted(set(container_ids))
        if not ids:
            return
        with self.db.session() as s:
            s.execute(
                update(ContainerRow)
                .where(ContainerRow.id.in_(ids), ContainerRow.worker_id.is_(None))
                .values(worker_id=self.worker_id, home_at=db_now())
            )


def is_container(key: str) -> bool:
    return key.startswith(CONTAINER_PREFIX)


def running(row: ContainerRow, now: float) -> bool:
    """Whether the container is live at `now` (the database's time): not marked expired, and active within
    its expiry minutes."""
    return row.status == "running" and now < row.last_active_at + row.expires_minutes * 60


class KeyedHomes:
    """Homes of every kind of session key: containers' (`cntr_...`) and threads' (any other key)."""

    def __init__(self, threads: Homes, containers: Homes) -> None:
        self.threads = threads
        self.containers = containers
        self.worker_id = threads.worker_id

    def of(self, key: str) -> Homes:
        return self.containers if is_container(key) else self.threads

    def moved_note(self, key: str) -> str:
        return self.of(key).moved_note(key)

    def take(self, key: str) -> str | None:
        return self.of(key).take(key)

    def release(self, key: str) -> None:
        self.of(key).release(key)

    def release_all(self) -> None:
        self.threads.release_all()
        self.containers.release_all()

    def check(self, keys: Iterable[str]) -> HomeCheck:
        keys = list(keys)
        existing: frozenset[str] = frozenset()
        homes: dict[str, str] = {}
        for kind in (self.threads, self.containers):
            mine = [k for k in keys if self.of(k) is kind]
            if mine:
                found = kind.check(mine)
                existing, homes = existing | found.existing, {**homes, **found.homes}
        return HomeCheck(existing=existing, homes=homes)

    def adopt(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.threads.adopt([k for k in keys if not is_container(k)])
        self.containers.adopt([k for k in keys if is_container(k)])
