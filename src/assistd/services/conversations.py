"""Conversations: a project's lists of items, in order, and the items' canonical JSON (protocol/items.py).

An item's place is its `seq`, given from the conversation's `item_seq` counter under the row's write lock
(the counter's UPDATE takes it on every database), so responses and clients appending to one conversation at
once keep a total order. Lists page by `seq`; their cursors are item ids (unique within a conversation).

For the Responses API, inside the caller's transaction: `require`, `append` (an item already in the
conversation is skipped, so a retried response does not repeat itself) and `items_in_order`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, select

from assistd.errors import ActiveRunConflict, InvalidRequest, NotFound
from assistd.ids import created_at_of, new_id, now
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.conversations import (
    MAX_ITEMS_PER_REQUEST,
    ConversationCreate,
    ConversationItemsCreate,
    ConversationObject,
    ConversationUpdate,
    ThreadToConversation,
)
from assistd.protocol.items import file_refs, parse_items, view_item
from assistd.services.messages import ActiveRunLookup
from assistd.services.thread_items import thread_items
from assistd.services.threads import get_thread_row
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.conversations import ConversationItemRow, ConversationRow
from assistd.storage.db import Database

PREFIX = "conv_"

# Finds the canonical item an `item_reference` names, among a project's items outside conversations
# (a response's input and output: set by the Responses service); None when there is none.
ItemResolver = Callable[[Session, str, str], dict[str, Any] | None]


def to_object(row: ConversationRow) -> ConversationObject:
    return ConversationObject(id=row.id, created_at=row.created_at, metadata=row.meta)


@dataclass(frozen=True)
class ThreadCopy:
    """A conversation made from a thread, and what of the thread it could not hold (said to the user)."""

    conversation: ConversationObject
    notes: list[str]


class ConversationService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.resolve_reference: ItemResolver | None = None
        self.active_run: ActiveRunLookup | None = None  # a thread with an active run is not copied

    # -- for the Responses API, inside the caller's transaction ----------------------------------------

    def require(
        self, s: Session, project: str, conversation_id: str, param: str = "conversation"
    ) -> ConversationRow:
        row = s.get(ConversationRow, conversation_id)
        if row is None or row.project != project:
            error = NotFound.of("conversation", conversation_id)
            error.param = param
            raise error
        return row

    def append(self, s: Session, project: str, conversation_id: str, items: list[dict[str, Any]]) -> None:
        """Adds canonical `items` (no item references) after the conversation's last; an item whose id is
        already in the conversation is skipped."""
        if any(item.get("type") == "item_reference" for item in items):
            raise ValueError("item references are resolved before they are appended")
        self.require(s, project, conversation_id)
        self._insert(s, conversation_id, items)

    def items_in_order(
        self, s: Session, project: str, conversation_id: str, upto: int | None = None
    ) -> list[dict[str, Any]]:
        """Every item of the conversation, oldest first (`upto`: those at positions up to it, what the
        conversation held when a response was made with it)."""
        self.require(s, project, conversation_id)
        query = select(ConversationItemRow.data).where(ConversationItemRow.conversation_id == conversation_id)
        if upto is not None:
            query = query.where(ConversationItemRow.seq <= upto)
        return list(s.exec(query.order_by(ConversationItemRow.seq.asc())))  # type: ignore[attr-defined]

    # -- the Conversations API ---------------------------------------------------------------------------

    def create(self, project: str, req: ConversationCreate) -> ConversationObject:
        items = parse_items(req.items or [], "items", max_items=MAX_ITEMS_PER_REQUEST)
        with self.db.session() as s:
            row = self._new(s, project, req.metadata or {})
            self._insert(s, row.id, self._resolved(s, project, items, "items"), param="items")
            return to_object(row)

    def get(self, project: str, conversation_id: str) -> ConversationObject:
        with self.db.session() as s:
            return to_object(self.require(s, project, conversation_id, "conversation_id"))

    def update(self, project: str, conversation_id: str, req: ConversationUpdate) -> ConversationObject:
        with self.db.session() as s:
            row = self.require(s, project, conversation_id, "conversation_id")
            row.meta = req.metadata or {}
            s.add(row)
            return to_object(row)

    def delete(self, project: str, conversation_id: str) -> Deleted:
        with self.db.session() as s:
            row = self.require(s, project, conversation_id, "conversation_id")
            where = ConversationItemRow.conversation_id == conversation_id
            s.execute(delete(ConversationItemRow).where(where))  # type: ignore[arg-type]
            s.delete(row)
        return Deleted(id=conversation_id, object="conversation.deleted")

    def list_items(
        self, project: str, conversation_id: str, page: PageQuery, include: Collection[str] = ()
    ) -> ListPage[dict[str, Any]]:
        with self.db.session() as s:
            self.require(s, project, conversation_id, "conversation_id")
            return self._page(s, conversation_id, page, include)

    def add_items(
        self, project: str, conversation_id: str, req: ConversationItemsCreate, include: Collection[str] = ()
    ) -> ListPage[dict[str, Any]]:
        """The items added, in the order given, as a list page."""
        items = parse_items(req.items, "items", max_items=MAX_ITEMS_PER_REQUEST)
        with self.db.session() as s:
            self.require(s, project, conversation_id, "conversation_id")
            added = self._insert(
                s, conversation_id, self._resolved(s, project, items, "items"), param="items"
            )
        data = [view_item(item, include) for item in added]
        return ListPage[dict[str, Any]](
            data=data, first_id=data[0]["id"], last_id=data[-1]["id"], has_more=False
        )

    def get_item(
        self, project: str, conversation_id: str, item_id: str, include: Collection[str] = ()
    ) -> dict[str, Any]:
        with self.db.session() as s:
            self.require(s, project, conversation_id, "conversation_id")
            return view_item(self._item_row(s, conversation_id, item_id).data, include)

    def delete_item(self, project: str, conversation_id: str, item_id: str) -> ConversationObject:
        """Removes the item; answers the conversation, as the hosted API does."""
        with self.db.session() as s:
            row = self.require(s, project, conversation_id, "conversation_id")
            s.delete(self._item_row(s, conversation_id, item_id))
            return to_object(row)

    def from_thread(self, project: str, thread_id: str, req: ThreadToConversation) -> ThreadCopy:
        """A new conversation holding the thread's messages as items, in order; without `metadata` in the
        request it takes the thread's."""
        with self.db.session() as s:
            try:
                thread = get_thread_row(s, project, thread_id)
            except NotFound as error:
                error.param = "thread_id"
                raise
            active = self.active_run(s, thread_id) if self.active_run else None
            if active:
                raise ActiveRunConflict(
                    f"Can't copy {thread_id} while a run {active} is active.", param="thread_id"
                )
            items, notes = thread_items(s, thread)
            metadata = (req.metadata or {}) if "metadata" in req.provided() else dict(thread.meta)
            row = self._new(s, project, metadata)
            self._insert(s, row.id, items)
            return ThreadCopy(to_object(row), notes)

    # -- rows --------------------------------------------------------------------------------------------

    def _new(self, s: Session, project: str, metadata: dict[str, str]) -> ConversationRow:
        oid = new_id(PREFIX)
        row = ConversationRow(id=oid, project=project, created_at=created_at_of(oid, PREFIX), meta=metadata)
        s.add(row)
        s.flush()
        return row

    def _insert(
        self, s: Session, conversation_id: str, items: list[dict[str, Any]], param: str | None = None
    ) -> list[dict[str, Any]]:
        """Inserts `items` after the conversation's last. An id already there (or twice in `items`) is a 400
        naming `param[i].id`, or without `param` the item is skipped. Returns the items inserted."""
        if not items:
            return []
        # The counter's UPDATE locks the row until the transaction ends: appends to it take turns.
        counter = ConversationRow.item_seq
        s.execute(
            update(ConversationRow)
            .where(ConversationRow.id == conversation_id)
            .values(item_seq=counter + len(items))  # type: ignore[arg-type]
        )
        last = s.exec(select(counter).where(ConversationRow.id == conversation_id)).one()
        seq = last - len(items)
        ids = [item["id"] for item in items]
        query = select(ConversationItemRow.item_id).where(
            ConversationItemRow.conversation_id == conversation_id,
            ConversationItemRow.item_id.in_(ids),  # type: ignore[attr-defined]
        )
        present = set(s.exec(query))
        created = now()
        added = []
        for i, item in enumerate(items):
            if item["id"] in present:
                if param is None:
                    continue
                raise InvalidRequest(
                    f"An item with id '{item['id']}' is already in the conversation.",
                    param=f"{param}[{i}].id",
                    code="invalid_value",
                )
            present.add(item["id"])
            seq += 1
            s.add(
                ConversationItemRow(
                    conversation_id=conversation_id,
                    seq=seq,
                    item_id=item["id"],
                    type=item["type"],
                    created_at=created,
                    data=item,
                )
            )
            added.append(item)
        s.flush()
        return added

    def _resolved(
        self, s: Session, project: str, items: list[dict[str, Any]], param: str
    ) -> list[dict[str, Any]]:
        """Client items with their `item_reference`s replaced by the items they name; file ids checked."""
        known = ToolResourceResolver.known_files(
            s, project, [file_id for file_id, _ in file_refs(items, param)]
        )
        for file_id, where in file_refs(items, param):
            if file_id not in known:
                raise InvalidRequest(f"No file found with id '{file_id}'.", param=where)
        out = []
        for i, item in enumerate(items):
            if item["type"] == "item_reference":
                found = self._find_item(s, project, item["id"])
                if found is None:
                    raise InvalidRequest(f"No item found with id '{item['id']}'.", param=f"{param}[{i}].id")
                item = found
            out.append(item)
        return out

    def _find_item(self, s: Session, project: str, item_id: str) -> dict[str, Any] | None:
        if self.resolve_reference is not None and (found := self.resolve_reference(s, project, item_id)):
            return found
        query = (
            select(ConversationItemRow.data)
            .join(ConversationRow, ConversationRow.id == ConversationItemRow.conversation_id)  # type: ignore[arg-type]
            .where(ConversationRow.project == project, ConversationItemRow.item_id == item_id)
        )
        return s.exec(query.order_by(ConversationItemRow.created_at.desc())).first()  # type: ignore[attr-defined]

    def _item_row(self, s: Session, conversation_id: str, item_id: str) -> ConversationItemRow:
        query = select(ConversationItemRow).where(
            ConversationItemRow.conversation_id == conversation_id, ConversationItemRow.item_id == item_id
        )
        row = s.exec(query).first()
        if row is None:
            error = NotFound.of("item", item_id)
            error.param = "item_id"
            raise error
        return row

    def _page(
        self, s: Session, conversation_id: str, page: PageQuery, include: Collection[str]
    ) -> ListPage[dict[str, Any]]:
        """A page by position; `after`/`before` are item ids of the conversation."""
        seq = ConversationItemRow.seq
        query = select(ConversationItemRow).where(ConversationItemRow.conversation_id == conversation_id)
        forward = page.order == "asc"
        if page.after:
            cursor = self._seq_of(s, conversation_id, page.after, "after")
            query = query.where(seq > cursor if forward else seq < cursor)
        if page.before:
            cursor = self._seq_of(s, conversation_id, page.before, "before")
            query = query.where(seq < cursor if forward else seq > cursor)
        reverse = bool(page.before and not page.after)  # read back from `before`: the page just before it
        ascending = forward != reverse
        rows = list(s.exec(query.order_by(seq.asc() if ascending else seq.desc()).limit(page.limit + 1)))  # type: ignore[attr-defined]
        has_more = len(rows) > page.limit
        rows = rows[: page.limit]
        if reverse:
            rows.reverse()
        data = [view_item(row.data, include) for row in rows]
        return ListPage[dict[str, Any]](
            data=data,
            first_id=data[0]["id"] if data else None,
            last_id=data[-1]["id"] if data else None,
            has_more=has_more,
        )

    def _seq_of(self, s: Session, conversation_id: str, item_id: str, param: str) -> int:
        query = select(ConversationItemRow.seq).where(
            ConversationItemRow.conversation_id == conversation_id, ConversationItemRow.item_id == item_id
        )
        found = s.exec(query).first()
        if found is None:
            raise InvalidRequest(
                f"Invalid '{param}': no item with id '{item_id}' in this conversation.", param=param
            )
        return found
