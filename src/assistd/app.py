"""create_app(settings): the Litestar application with every long-lived object built in its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar, Request, Router, get
from litestar.datastructures import State
from litestar.di import Provide

from assistd import __version__
from assistd.api.assistants import AssistantController
from assistd.api.auth import KeyRing, provide_project
from assistd.api.body import JSONRequest
from assistd.api.containers import CONTAINER_CONTROLLERS
from assistd.api.conversations import CONVERSATION_CONTROLLERS
from assistd.api.errors import EXCEPTION_HANDLERS
from assistd.api.files import FileController
from assistd.api.messages import MessageController
from assistd.api.models import ModelController
from assistd.api.openapi import document, openapi_config
from assistd.api.params import page_query
from assistd.api.playground import PLAYGROUND_HANDLERS
from assistd.api.raw_target import check_raw_target
from assistd.api.responses import ResponseController
from assistd.api.runs import RunController
from assistd.api.threads import ThreadController
from assistd.api.usage import UsageController
from assistd.api.vector_stores import VECTOR_STORE_CONTROLLERS
from assistd.config import Settings
from assistd.container import Container
from assistd.metrics.http import count_requests, metrics_endpoint
from assistd.metrics.logs import enable_json_logs

log = logging.getLogger("assistd")

API_CONTROLLERS = [
    AssistantController,
    ThreadController,
    MessageController,
    FileController,
    ModelController,
    RunController,
    UsageController,
    *VECTOR_STORE_CONTROLLERS,
    *CONTAINER_CONTROLLERS,
    *CONVERSATION_CONTROLLERS,
    ResponseController,
]


@get("/health", sync_to_thread=False, include_in_schema=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def provide_container(state: State) -> Container:
    return state.container


async def provide_project_after_svc(request: Request, svc: Container) -> str:
    """The project of the request's API key, resolved after `svc`: Litestar resolves the dependencies of
    one level together in an anyio task group, which cost a run's request more than the rest of its
    routing (issue 20's profile); chained, each is a plain call."""
    return await provide_project(request)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Synchronous routes run in the loop's default executor; asyncio sizes it min(32, CPUs + 4), only 6
        # threads on a 2-core server, too few for a team's concurrent clients.
        api_pool = ThreadPoolExecutor(max_workers=settings.api_threads, thread_name_prefix="api")
        asyncio.get_running_loop().set_default_executor(api_pool)
        container = Container.build(settings)
        app.state.container = container
        await anyio.to_thread.run_sync(container.start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(container.close)
            api_pool.shutdown(wait=False, cancel_futures=True)

    v1 = Router(
        path="/v1",
        route_handlers=API_CONTROLLERS,
        dependencies={
            "project": Provide(provide_project_after_svc),
            "svc": Provide(provide_container, sync_to_thread=False),
            "page": Provide(page_query, sync_to_thread=False),
        },
    )
    # A worker-only process (--role worker) answers /health alone: the API is served by other nodes.
    handlers = [health] if settings.role == "worker" else [v1, health, *PLAYGROUND_HANDLERS]
    if settings.metrics:  # every role: a worker's metrics are its jobs'
        handlers.append(metrics_endpoint)
    if settings.log_json:
        enable_json_logs()
    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_class=JSONRequest,  # a body too deeply nested to decode is a 400, not a RecursionError
        middleware=[check_raw_target],  # %2F / %00 in the raw path: 404 (ids hold neither)
        openapi_config=openapi_config(__version__),
        request_max_body_size=settings.max_upload_bytes + 1024 * 1024,
        state=State({"keyring": KeyRing(settings.api_keys)}),
    )
    document(app)  # the request models and error bodies the handlers' signatures cannot show
    app.asgi_handler = count_requests(app.asgi_handler)  # outermost: unmatched paths and early errors too
    return app
