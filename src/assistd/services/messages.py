from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from assistd.engine.images import ImageUnavailable
from assistd.errors import ActiveRunConflict, InvalidRequest, NotFound
from assistd.ids import created_at_of, new_id
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.messages import MessageCreate, MessageObject, MessageUpdate
from assistd.services.pagination import paginate
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.db import Database
from assistd.storage.messages import MessageRow
from assistd.storage.threads import ThreadRow

PREFIX = "msg_"

# Returns the id of the thread's active run, if any (set by the run engine).
ActiveRunLookup = Callable[[Session, str], str | None]
# Called after a message with attachments is added (file_search attachments index their files).
AttachmentHook = Callable[[Session, ThreadRow, MessageRow], None]


def to_object(row: MessageRow) -> MessageObject:
    return MessageObject(
        id=row.id,
        created_at=row.created_at,
        thread_id=row.thread_id,
        status=row.status,
        incomplete_details=row.incomplete_details,
        completed_at=row.completed_at,
        incomplete_at=row.incomplete_at,
        role=row.role,
        content=row.content,
        assistant_id=row.assistant_id,
        run_id=row.run_id,
        attachments=row.attachments if row.attachments is not None else [],
        metadata=row.meta,
    )


class MessageService:
    def __init__(self, db: Database, resources: ToolResourceResolver) -> None:
        self.db = db
        self.resources = resources
        self.active_run: ActiveRunLookup | None = None
        self.attachment_hooks: list[AttachmentHook] = []
        # checks an image part (project, part): an image that cannot be used is refused with its message
        # (engine/images.py ImageCache.check); None: not checked here
        self.image_check: Callable[[str, dict[str, Any]], None] | None = None

    def add_in(self, s: Session, thread: ThreadRow, req: MessageCreate, param: str = "") -> MessageRow:
        """Adds a client message to `thread` inside the caller's transaction."""
        prefix = f"{param}." if param else ""
        attachments = [a.model_dump() for a in req.attachments or []]
        file_ids = [a["file_id"] for a in attachments]
        self.resources.check_files(s, thread.project, file_ids, f"{prefix}attachments", suffix=".file_id")
        parts = req.content_parts()
        images = {i: p["image_file"]["file_id"] for i, p in enumerate(parts) if p["type"] == "image_file"}
        known = self.resources.known_files(s, thread.project, list(images.values()))
        for i, file_id in images.items():
            if file_id not in known:
                raise InvalidRequest(
                    f"No file found with id '{file_id}'.", param=f"{prefix}content[{i}].image_file.file_id"
                )
        oid = new_id(PREFIX)
        created = created_at_of(oid, PREFIX)
        row = MessageRow(
            id=oid,
            project=thread.project,
            thread_id=thread.id,
            created_at=created,
            role=req.role,
            content=parts,
            status="completed",
            completed_at=created,
            attachments=attachments or None,
            meta=req.metadata or {},
        )
        s.add(row)
        s.flush()
        if attachments:
            for hook in self.attachment_hooks:
                hook(s, thread, row)
        return row

    def _thread(self, s: Session, project: str, thread_id: str) -> ThreadRow:
        from assistd.services.threads import get_thread_row

        return get_thread_row(s, project, thread_id)

    def check_images(self, project: str, messages: list[MessageCreate | None], param: str = "") -> None:
        """Refuses (400 naming the part) an image a message holds that cannot be used. Called before the
        transaction that adds the messages: decoding an image may take seconds, and no database lock is
        held meanwhile. A file that does not exist is left to `add_in`'s check."""
        if self.image_check is None:
            return
        for j, req in enumerate(messages):
            if req is None:
                continue
            prefix = f"{param}[{j}]." if param else ""
            for i, part in enumerate(req.content_parts()):
                if part["type"] not in ("image_file", "image_url"):
                    continue
                try:
                    self.image_check(project, part)
                except ImageUnavailable as exc:
                    where = "image_file.file_id" if part["type"] == "image_file" else "image_url.url"
                    raise InvalidRequest(str(exc), param=f"{prefix}content[{i}].{where}") from None

    def create(self, project: str, thread_id: str, req: MessageCreate) -> MessageObject:
        from assistd.services.threads import lock_thread_row

        self.check_images(project, [req])
        with self.db.session() as s:
            thread = lock_thread_row(s, project, thread_id)  # a run being created on it waits, or we do
            active = self.active_run(s, thread_id) if self.active_run else None
            if active:
                raise ActiveRunConflict(
                    f"Can't add messages to {thread_id} while a run {active} is active.", param="thread_id"
                )
            return to_object(self.add_in(s, thread, req))

    def _row(self, s: Session, project: str, thread_id: str, message_id: str) -> MessageRow:
        self._thread(s, project, thread_id)
        row = s.get(MessageRow, message_id)
        if row is None or row.thread_id != thread_id:
            raise NotFound.of("message", message_id)
        return row

    def get(self, project: str, thread_id: str, message_id: str) -> MessageObject:
        with self.db.session() as s:
            return to_object(self._row(s, project, thread_id, message_id))

    def list(
        self, project: str, thread_id: str, page: PageQuery, run_id: str | None = None
    ) -> ListPage[MessageObject]:
        with self.db.session() as s:
            self._thread(s, project, thread_id)
            where = [MessageRow.thread_id == thread_id]
            if run_id:
                where.append(MessageRow.run_id == run_id)
            return paginate(s, MessageRow, where, page, to_object, PREFIX)

    def update(self, project: str, thread_id: str, message_id: str, req: MessageUpdate) -> MessageObject:
        with self.db.session() as s:
            row = self._row(s, project, thread_id, message_id)
            if "metadata" in req.provided():
                row.meta = req.metadata or {}
            s.add(row)
            return to_object(row)

    def delete(self, project: str, thread_id: str, message_id: str) -> Deleted:
        with self.db.session() as s:
            s.delete(self._row(s, project, thread_id, message_id))
        return Deleted(id=message_id, object="thread.message.deleted")
