"""Helpers shared by the controllers: the 200-status POST, body and paging parameters."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
from litestar import delete as _delete
from litestar import get as _get
from litestar import post as _post

from assistd.api.openapi import Cursor, Limit, Order
from assistd.protocol.common import PageQuery

# Every route runs its (blocking) service call in a worker thread, and POST answers 200 as OpenAI does.
get = partial(_get, sync_to_thread=True)
post = partial(_post, sync_to_thread=True, status_code=200)
delete = partial(_delete, sync_to_thread=True, status_code=200)
# For async handlers (streams, uploads, work on a lane of its own): POST answering 200.
apost = partial(_post, status_code=200)
aget = _get

T = TypeVar("T")


class ThreadLane:
    """A few threads of its own for one kind of expensive request.

    Synchronous routes share one thread pool (asyncio's default executor: min(32, CPUs + 4) threads), so
    a burst of slow requests there stalls every other route. Work run on a lane waits for one of the
    lane's threads instead, without holding a thread of the shared pool while it waits."""

    def __init__(self, threads: int) -> None:
        self.limiter = anyio.CapacityLimiter(threads)

    def __deepcopy__(self, memo: dict) -> ThreadLane:
        return self  # a shared resource: Litestar copies handlers (and their controller), never the lane

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self.limiter)


def page_query(
    limit: Limit = None, order: Order = None, after: Cursor = None, before: Cursor = None
) -> PageQuery:
    return PageQuery.from_query(limit, order, after, before)
