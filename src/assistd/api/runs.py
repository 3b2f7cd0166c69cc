from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from litestar import Controller, Request
from litestar.response import Stream

from assistd.api.openapi import query_param
from assistd.api.params import apost, get, post
from assistd.api.sse import event_stream
from assistd.container import Container
from assistd.engine.events import Event
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.runs import (
    FILE_SEARCH_CONTENT,
    REASONING,
    RunCreate,
    RunObject,
    RunUpdate,
    StepObject,
    SubmitToolOutputs,
    ThreadAndRunCreate,
)

R = TypeVar("R")
T = TypeVar("T")

# What a step may include beyond its default fields: the SDK sends `include[]`, a plain `include` works too.
INCLUDE = [
    query_param(
        "include[]", type="array", items={"type": "string", "enum": [FILE_SEARCH_CONTENT, REASONING]}
    ),
]


def includes(request: Request) -> tuple[str, ...]:
    params = request.query_params
    return tuple(params.getall("include[]", [])) + tuple(params.getall("include", []))


async def _queued(
    svc: Container, parse: Callable[[], R], write: Callable[[R], T], run_id: Callable[[T], str]
) -> tuple[R, T]:
    """Parses the request and writes what it queues in one worker thread; a run the client does not stream
    is launched there too (a streamed one is, once its stream has subscribed): one hop from the event loop
    to a thread where there were two or three (each about 90 µs of CPU, issue 20)."""

    def work() -> tuple[R, T]:
        req = parse()
        out = write(req)
        if not req.stream:  # type: ignore[attr-defined]
            svc.engine.launch(run_id(out))
        return req, out

    return await anyio.to_thread.run_sync(work)


def _id(run: RunObject) -> str:
    return run.id


def _run_started(run: RunObject) -> list[Event]:
    return [Event("thread.run.created", run), Event("thread.run.queued", run)]


class RunController(Controller):
    path = "/threads"
    tags = ["Runs"]

    @apost("/{thread_id:str}/runs", body=RunCreate)
    async def create(
        self, svc: Container, project: str, thread_id: str, data: Any = None
    ) -> RunObject | Stream:
        req, run = await _queued(
            svc, lambda: RunCreate.parse(data), lambda r: svc.runs.create(project, thread_id, r), _id
        )
        if req.stream:
            return await event_stream(svc.bus, run.id, _run_started(run), lambda: svc.engine.launch(run.id))
        return run

    @apost("/runs", body=ThreadAndRunCreate)
    async def create_thread_and_run(
        self, svc: Container, project: str, data: Any = None
    ) -> RunObject | Stream:
        req, (thread, run) = await _queued(
            svc,
            lambda: ThreadAndRunCreate.parse(data),
            lambda r: svc.runs.create_thread_and_run(project, r),
            lambda out: out[1].id,
        )
        if req.stream:
            initial = [Event("thread.created", thread), *_run_started(run)]
            return await event_stream(svc.bus, run.id, initial, lambda: svc.engine.launch(run.id))
        return run

    @get("/{thread_id:str}/runs")
    def list_(self, svc: Container, project: str, thread_id: str, page: PageQuery) -> ListPage[RunObject]:
        return svc.runs.list(project, thread_id, page)

    @get("/{thread_id:str}/runs/{run_id:str}")
    def retrieve(self, svc: Container, project: str, thread_id: str, run_id: str) -> RunObject:
        return svc.runs.get(project, thread_id, run_id)

    @post("/{thread_id:str}/runs/{run_id:str}", body=RunUpdate)
    def update(
        self, svc: Container, project: str, thread_id: str, run_id: str, data: Any = None
    ) -> RunObject:
        return svc.runs.update(project, thread_id, run_id, RunUpdate.parse(data))

    @post("/{thread_id:str}/runs/{run_id:str}/cancel")
    def cancel(self, svc: Container, project: str, thread_id: str, run_id: str) -> RunObject:
        run = svc.runs.request_cancel(project, thread_id, run_id)
        svc.engine.cancel(run_id)
        return run

    @apost("/{thread_id:str}/runs/{run_id:str}/submit_tool_outputs", body=SubmitToolOutputs)
    async def submit_tool_outputs(
        self, svc: Container, project: str, thread_id: str, run_id: str, data: Any = None
    ) -> RunObject | Stream:
        req, (run, step, seq) = await _queued(
            svc,
            lambda: SubmitToolOutputs.parse(data),
            lambda r: svc.runs.submit_tool_outputs(project, thread_id, run_id, r),
            lambda out: out[0].id,
        )
        if req.stream:
            initial = [Event("thread.run.step.completed", step), Event("thread.run.queued", run)]
            return await event_stream(svc.bus, run.id, initial, lambda: svc.engine.launch(run.id), after=seq)
        return run

    @get("/{thread_id:str}/runs/{run_id:str}/steps", query=INCLUDE)
    def list_steps(
        self, request: Request, svc: Container, project: str, thread_id: str, run_id: str, page: PageQuery
    ) -> ListPage[StepObject]:
        return svc.runs.list_steps(project, thread_id, run_id, page, includes(request))

    @get("/{thread_id:str}/runs/{run_id:str}/steps/{step_id:str}", query=INCLUDE)
    def retrieve_step(
        self, request: Request, svc: Container, project: str, thread_id: str, run_id: str, step_id: str
    ) -> StepObject:
        return svc.runs.get_step(project, thread_id, run_id, step_id, includes(request))
