from __future__ import annotations

from litestar import Controller, Request, Router

from assistd.api.params import ThreadLane, aget
from assistd.container import Container

# Usage pages are the most expensive reads (a scan over a time range): they run on a lane of their own,
# so a burst of them queues here instead of taking the threads every synchronous route shares.
USAGE_THREADS = 2


class UsageController(Controller):
    """Usage per project, in the shape of OpenAI's organization usage API."""

    path = "/organization/usage"
    tags = ["Usage"]

    def __init__(self, owner: Router) -> None:  # Litestar builds a controller once per app
        super().__init__(owner)
        self.lane = ThreadLane(USAGE_THREADS)

    @aget("/code_interpreter_sessions")
    async def code_interpreter_sessions(self, request: Request, svc: Container, project: str) -> dict:
        return await self.lane.run(svc.usage.code_interpreter_sessions, project, dict(request.query_params))

    @aget("/completions")
    async def completions(self, request: Request, svc: Container, project: str) -> dict:
        return await self.lane.run(svc.usage.completions, project, dict(request.query_params))
