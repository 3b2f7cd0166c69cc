"""Helpers shared by the controllers: the 200-status POST, body and paging parameters."""

from __future__ import annotations

from functools import partial

from litestar import delete as _delete
from litestar import get as _get
from litestar import post as _post

from assistd.protocol.common import PageQuery

# Every route runs its (blocking) service call in a worker thread, and POST answers 200 as OpenAI does.
get = partial(_get, sync_to_thread=True)
post = partial(_post, sync_to_thread=True, status_code=200)
delete = partial(_delete, sync_to_thread=True, status_code=200)
# For async handlers (streams, uploads): POST answering 200.
apost = partial(_post, status_code=200)


def page_query(
    limit: str | None = None, order: str | None = None, after: str | None = None, before: str | None = None
) -> PageQuery:
    return PageQuery.from_query(limit, order, after, before)
