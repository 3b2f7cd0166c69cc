from __future__ import annotations

from litestar import Controller, Request, Router

from assistd.api.openapi import query_param
from assistd.api.params import ThreadLane, aget
from assistd.container import Container
from assistd.protocol.usage import CodeInterpreterSessionsResult, CompletionsResult, UsagePage

# Usage pages are the most expensive reads (a scan over a time range): they run on a lane of their own,
# so a burst of them queues here instead of taking the threads every synchronous route shares.
USAGE_THREADS = 2
UNIX_SECONDS = {"type": "integer", "minimum": 0, "maximum": 999_999_999_999}
# The query of both pages (services/usage.py parse_window checks it as the hosted API does).
USAGE_QUERY = [
    query_param("start_time", required=True, **UNIX_SECONDS, description="Unix seconds, inclusive."),
    query_param(
        "end_time", **UNIX_SECONDS, description="Unix seconds, exclusive, after start_time; default now."
    ),
    query_param("bucket_width", type="string", enum=["1m", "1h", "1d"], default="1d"),
    query_param(
        "limit",
        type="integer",
        minimum=1,
        maximum=1440,
        description="Buckets a page: 1m at most 1440 (default 60), 1h at most 168 (24), 1d at most 31 (7).",
    ),
    query_param("page", type="string", description="The `next_page` cursor of the previous page."),
]


class UsageController(Controller):
    """Usage per project, in the shape of OpenAI's organization usage API."""

    path = "/organization/usage"
    tags = ["Usage"]

    def __init__(self, owner: Router) -> None:  # Litestar builds a controller once per app
        super().__init__(owner)
        self.lane = ThreadLane(USAGE_THREADS)

    @aget("/code_interpreter_sessions", query=USAGE_QUERY)
    async def code_interpreter_sessions(
        self, request: Request, svc: Container, project: str
    ) -> UsagePage[CodeInterpreterSessionsResult]:
        return await self.lane.run(svc.usage.code_interpreter_sessions, project, dict(request.query_params))

    @aget("/completions", query=USAGE_QUERY)
    async def completions(
        self, request: Request, svc: Container, project: str
    ) -> UsagePage[CompletionsResult]:
        return await self.lane.run(svc.usage.completions, project, dict(request.query_params))
