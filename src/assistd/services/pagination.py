"""Cursor pagination as the SDK pages: order by (created_at, id); `after`/`before` are object ids.

Our ids sort by creation time (assistd.ids), so a cursor's position is known from the id itself, even
when the object it names was deleted in the meantime. They sort bytewise: id columns are `COLLATE "C"` on
PostgreSQL (storage.columns.ID), so the order and the cursor comparisons below do not depend on the
database's locale (an ICU en-US database would put `a` before `B`); SQLite compares text bytewise anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import and_, or_
from sqlmodel import Session, select

from assistd.errors import InvalidRequest
from assistd.ids import created_at_of
from assistd.protocol.common import ListPage, PageQuery

T = TypeVar("T")


def paginate(
    session: Session,
    table: Any,
    where: list[Any],
    page: PageQuery,
    convert: Callable[[Any], T],
    prefix: str,
) -> ListPage[T]:
    created, ident = table.created_at, table.id
    stmt = select(table).where(*where)
    forward = page.order == "asc"
    if page.after:
        stmt = stmt.where(
            _beyond(created, ident, _cursor(page.after, prefix, "after", session, table), forward)
        )
    if page.before:
        stmt = stmt.where(
            _beyond(created, ident, _cursor(page.before, prefix, "before", session, table), not forward)
        )
    # With only `before`, read backwards from the cursor so the page is the one just before it.
    reverse = bool(page.before and not page.after)
    ascending = forward != reverse
    order = (created.asc(), ident.asc()) if ascending else (created.desc(), ident.desc())
    rows = list(session.exec(stmt.order_by(*order).limit(page.limit + 1)))
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    if reverse:
        rows.reverse()
    data = [convert(row) for row in rows]
    return ListPage[T](
        data=data,
        first_id=getattr(data[0], "id", None) if data else None,
        last_id=getattr(data[-1], "id", None) if data else None,
        has_more=has_more,
    )


def _cursor(object_id: str, prefix: str, param: str, session: Session, table: Any) -> tuple[int, str]:
    created = created_at_of(object_id, prefix)
    if created is None:
        row = session.get(table, object_id)
        if row is None:
            raise InvalidRequest(f"Invalid '{param}': no object with id '{object_id}'.", param=param)
        created = row.created_at
    return created, object_id


def _beyond(created: Any, ident: Any, cursor: tuple[int, str], forward: bool) -> Any:
    c_created, c_id = cursor
    if forward:
        return or_(created > c_created, and_(created == c_created, ident > c_id))
    return or_(created < c_created, and_(created == c_created, ident < c_id))
