"""The Responses API: /v1/responses (create, retrieve and resume a stream, delete, cancel, input items,
input token counts)."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

import anyio
from litestar import Controller, Request
from litestar.response import Stream

from assistd.api.openapi import query_param
from assistd.api.params import aget, apost, delete, get, post
from assistd.api.sse import StatusCheck, empty_stream, response_stream, watch
from assistd.container import Container
from assistd.engine.responses.events import END, KEEP_SECONDS, STREAM_END
from assistd.engine.responses.tape import TERMINAL
from assistd.errors import InvalidRequest, NotFound
from assistd.ids import new_id
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.responses import (
    InputTokens,
    ResponseCreate,
    ResponseDeleted,
    ResponseInput,
    ResponseObject,
)
from assistd.services.responses import PREFIX

INCLUDE = [query_param("include[]", type="array", items={"type": "string"})]
RETRIEVE = [
    *INCLUDE,
    query_param("stream", type="boolean"),
    query_param("starting_after", type="integer"),
]


def includes(request: Request) -> tuple[str, ...]:
    params = request.query_params
    return tuple(params.getall("include[]", [])) + tuple(params.getall("include", []))


def status_of(svc: Container, project: str, response_id: str) -> StatusCheck:
    """The response's status, for a stream's or a blocking create's keep-alive look (NotFound: it is gone);
    a `store: false` one's too."""
    return lambda: svc.responses.status(project, response_id, unstored=True)


class ResponseController(Controller):
    path = "/responses"
    tags = ["Responses"]

    @apost("/", body=ResponseCreate)
    async def create(self, svc: Container, project: str, data: Any = None) -> ResponseObject | Stream:
        req = await anyio.to_thread.run_sync(ResponseCreate.parse, data)  # a big input takes a while
        response_id = new_id(PREFIX)
        alive = status_of(svc, project, response_id)

        def start() -> dict[str, Any]:  # in one worker thread (each hop to one costs ~90 µs of CPU)
            obj = svc.responses.create(project, req, response_id)
            svc.engine.launch(response_id)
            return obj

        if req.stream:
            return await response_stream(svc.bus, response_id, start, check=alive)
        if req.background:
            return ResponseObject(**await anyio.to_thread.run_sync(start))
        # Answered when the response ends: its stream's last event says so (from whichever node runs it); a
        # 404 when it is deleted meanwhile (it ends cancelled first, or no end event comes at all).
        sub = svc.bus.subscribe(response_id, asyncio.get_running_loop())
        end = None
        try:
            await anyio.to_thread.run_sync(start)
            async with aclosing(watch(sub, alive)) as events:
                async for event in events:
                    if event is not None and event.name in STREAM_END:
                        end = event.name
                        break
        finally:
            sub.close()
        if end == END:  # cancelled: only its deletion cancels a response that is not in the background
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        include = tuple(req.include or ())
        return ResponseObject(
            **await anyio.to_thread.run_sync(svc.responses.get, project, response_id, include, True)
        )

    @aget("/{response_id:str}", query=RETRIEVE)
    async def retrieve(
        self, request: Request, svc: Container, project: str, response_id: str
    ) -> ResponseObject | Stream:
        params = request.query_params
        obj = await anyio.to_thread.run_sync(svc.responses.get, project, response_id, includes(request))
        if params.get("stream") not in ("true", "1", "True"):
            return ResponseObject(**obj)
        after = params.get("starting_after")
        try:
            start_at = int(after) + 1 if after is not None else 0
        except ValueError:
            raise InvalidRequest("starting_after must be an integer", param="starting_after") from None
        if obj["status"] in TERMINAL:
            last = await anyio.to_thread.run_sync(svc.bus.last_seq, response_id)
            if last is None:
                raise InvalidRequest(
                    f"The events of response '{response_id}' are no longer kept (they are kept "
                    f"{KEEP_SECONDS // 60} minutes after it ends); retrieve it without stream.",
                    param="stream",
                )
            if start_at > last:  # resumed after its last event: nothing more will come
                return empty_stream()
        alive = status_of(svc, project, response_id)
        return await response_stream(svc.bus, response_id, lambda: None, after=max(0, start_at), check=alive)

    @delete("/{response_id:str}")
    def delete_(self, svc: Container, project: str, response_id: str) -> ResponseDeleted:
        deleted = ResponseDeleted(**svc.responses.delete(project, response_id, svc.engine.store))
        svc.engine.cancel(response_id)  # stops its generation if it runs here
        return deleted

    @post("/{response_id:str}/cancel")
    def cancel(self, svc: Container, project: str, response_id: str) -> ResponseObject:
        obj = svc.responses.cancel(project, response_id, svc.engine.store)
        svc.engine.cancel(response_id)
        return ResponseObject(**obj)

    @get("/{response_id:str}/input_items", query=INCLUDE)
    def input_items(
        self, request: Request, svc: Container, project: str, response_id: str, page: PageQuery
    ) -> ListPage[dict[str, Any]]:
        return svc.responses.input_items(project, response_id, page, includes(request))

    @post("/input_tokens", body=ResponseInput)
    def input_tokens(self, svc: Container, project: str, data: Any = None) -> InputTokens:
        return InputTokens(input_tokens=svc.responses.input_tokens(project, ResponseInput.parse(data)))
