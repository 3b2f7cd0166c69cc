"""Shapes shared by several resources: lists, deletions, pagination queries."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from assistd.errors import InvalidRequest

T = TypeVar("T")


class ListPage(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


class PageQuery(BaseModel):
    """The cursor query of every list endpoint: limit 1-100, order asc|desc, after/before ids."""

    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None

    @classmethod
    def from_query(
        cls, limit: Any = None, order: Any = None, after: Any = None, before: Any = None, max_limit: int = 100
    ) -> PageQuery:
        page = cls()
        if limit is not None:
            try:
                page.limit = int(limit)
            except (TypeError, ValueError):
                raise InvalidRequest(
                    f"Invalid 'limit': expected an integer, got '{limit}'.", param="limit"
                ) from None
            if not 1 <= page.limit <= max_limit:
                raise InvalidRequest(
                    f"Invalid 'limit': integer below minimum value or above maximum value ({page.limit}); "
                    f"expected 1 to {max_limit}.",
                    param="limit",
                )
        if order is not None:
            if order not in ("asc", "desc"):
                raise InvalidRequest(
                    f"Invalid value for 'order': '{order}'. Supported values are: 'asc' and 'desc'.",
                    param="order",
                )
            page.order = order
        page.after = after or None
        page.before = before or None
        return page
