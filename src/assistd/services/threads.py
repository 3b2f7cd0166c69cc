from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, update
from sqlmodel import Session, select

from assistd.errors import NotFound
from assistd.ids import created_at_of, new_id
from assistd.protocol.common import Deleted
from assistd.protocol.threads import ThreadCreate, ThreadObject, ThreadUpdate
from assistd.services.messages import MessageService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.columns import by_id
from assistd.storage.db import Database
from assistd.storage.threads import ThreadRow

PREFIX = "thread_"

# Called inside the deleting transaction, before the thread row goes (vector stores made for the thread,
# code interpreter sessions...).
ThreadDeleteHook = Callable[[Session, ThreadRow], None]


def to_object(row: ThreadRow) -> ThreadObject:
    return ThreadObject(
        id=row.id,
        created_at=row.created_at,
        tool_resources=row.tool_resources if row.tool_resources is not None else {},
        metadata=row.meta,
    )


def lock_thread_row(s: Session, project: str, thread_id: str) -> ThreadRow:
    """The thread, locked until the caller's transaction ends: run creation and message creation on one
    thread take turns, whatever the number of server processes (PostgreSQL: a row lock; SQLite: the write
    lock, taken by the first statement so that what is read next is current)."""
    if s.get_bind().dialect.name == "postgresql":
        return _found(s.exec(_LOCK_PG, params={"thread_id": thread_id}).first(), project, thread_id)
    s.connection().execute(_LOCK_SQLITE, {"thread_id": thread_id})
    return get_thread_row(s, project, thread_id)


# Built once (bound parameters): every run's and message's creation takes the lock.
# FOR NO KEY UPDATE: creations take turns, yet a worker's inserts referencing the thread never wait.
_LOCK_PG = select(ThreadRow).where(ThreadRow.id == bindparam("thread_id")).with_for_update(key_share=True)
# Core (an ORM update would look for the row among the session's objects to update them too)
_THREADS = ThreadRow.__table__  # type: ignore[attr-defined]
_LOCK_SQLITE = update(_THREADS).where(_THREADS.c.id == bindparam("thread_id")).values(id=_THREADS.c.id)


def get_thread_row(s: Session, project: str, thread_id: str) -> ThreadRow:
    # a statement built once (every run's and message's creation reads the thread: Session.get builds one)
    return _found(s.exec(by_id(ThreadRow), params={"id": thread_id}).first(), project, thread_id)


def _found(row: ThreadRow | None, project: str, thread_id: str) -> ThreadRow:
    if row is None or row.project != project:
        raise NotFound.of("thread", thread_id)
    return row


class ThreadService:
    def __init__(self, db: Database, resources: ToolResourceResolver, messages: MessageService) -> None:
        self.db = db
        self.resources = resources
        self.messages = messages
        self.delete_hooks: list[ThreadDeleteHook] = []

    def create_in(self, s: Session, project: str, req: ThreadCreate) -> ThreadRow:
        """Creates the thread and its initial messages inside the caller's transaction."""
        oid = new_id(PREFIX)
        row = ThreadRow(
            id=oid,
            project=project,
            created_at=created_at_of(oid, PREFIX),
            tool_resources=self.resources.resolve(s, project, req.tool_resources),
            meta=req.metadata or {},
        )
        s.add(row)
        s.flush()
        for i, message in enumerate(req.messages or []):
            self.messages.add_in(s, row, message, param=f"messages[{i}]")
        return row

    def create(self, project: str, req: ThreadCreate) -> ThreadObject:
        self.messages.check_images(project, list(req.messages or []), "messages")
        with self.db.session() as s:
            return to_object(self.create_in(s, project, req))

    def get(self, project: str, thread_id: str) -> ThreadObject:
        with self.db.session() as s:
            return to_object(get_thread_row(s, project, thread_id))

    def update(self, project: str, thread_id: str, req: ThreadUpdate) -> ThreadObject:
        given = req.provided()
        with self.db.session() as s:
            row = get_thread_row(s, project, thread_id)
            if "metadata" in given:
                row.meta = req.metadata or {}
            if "tool_resources" in given:
                row.tool_resources = self.resources.resolve(s, project, req.tool_resources)
            s.add(row)
            return to_object(row)

    def delete(self, project: str, thread_id: str) -> Deleted:
        with self.db.session() as s:
            row = get_thread_row(s, project, thread_id)
            for hook in self.delete_hooks:
                hook(s, row)
            s.delete(row)
        return Deleted(id=thread_id, object="thread.deleted")
