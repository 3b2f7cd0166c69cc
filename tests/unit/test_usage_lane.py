"""Slow usage requests cannot starve the other routes: the real controllers served by uvicorn in a thread, a
usage service that blocks until released, 50 usage requests in flight, and /v1/assistants still answering."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import httpx
import uvicorn
from litestar import Litestar, Router
from litestar.di import Provide

from assistd.api.assistants import AssistantController
from assistd.api.errors import EXCEPTION_HANDLERS
from assistd.api.params import page_query
from assistd.api.usage import USAGE_THREADS, UsageController
from assistd.container import Container
from assistd.services.assistants import AssistantService
from assistd.storage.db import Database
from tests.support import free_port

IN_FLIGHT = 50  # more than any default thread pool (asyncio's is at most 32 threads)
PATIENCE = 120  # seconds: generous, this machine is shared; a starved route never answers at all


class BlockedUsage:
    """A usage service whose every call waits for `release` (a range scan over a huge table, say)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = self.calls = 0

    def completions(self, project: str, query: dict) -> dict:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(PATIENCE)
            return {"object": "page", "data": [], "has_more": False, "next_page": None}
        finally:
            with self.lock:
                self.running -= 1


def make_app(container: Container) -> Litestar:
    v1 = Router(
        path="/v1",
        route_handlers=[AssistantController, UsageController],
        dependencies={
            "project": Provide(lambda: "project-a", sync_to_thread=False),
            "svc": Provide(lambda: container, sync_to_thread=False),
            "page": Provide(page_query, sync_to_thread=False),
        },
    )
    return Litestar(route_handlers=[v1], exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(app: Litestar) -> Iterator[str]:
    """The app behind a real uvicorn server (its own event loop and default thread pool) in a thread."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(PATIENCE * 10):
            if server.started:
                break
            threading.Event().wait(0.1)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(PATIENCE)


async def _wait_for(condition, what: str) -> None:
    for _ in range(PATIENCE * 10):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_slow_usage_requests_leave_other_routes_answering(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.create_schema()
    usage = BlockedUsage()
    container = object.__new__(Container)  # only the two services these routes use
    container.usage = usage  # type: ignore[assignment]
    container.assistants = AssistantService(db, None, None)  # type: ignore[arg-type]
    with serving(make_app(container)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=PATIENCE) as client:
            query = {"start_time": "0", "bucket_width": "1m", "limit": "1440"}
            pending = [
                asyncio.create_task(client.get("/v1/organization/usage/completions", params=query))
                for _ in range(IN_FLIGHT)
            ]
            try:
                await _wait_for(lambda: usage.calls >= USAGE_THREADS, "the first usage requests to start")
                listed = await asyncio.wait_for(client.get("/v1/assistants"), PATIENCE)
                assert listed.status_code == 200 and listed.json()["object"] == "list"
                assert usage.running == USAGE_THREADS  # the rest wait for the lane, holding no thread
            finally:
                usage.release.set()
                answers = await asyncio.gather(*pending)
    assert [a.status_code for a in answers] == [200] * IN_FLIGHT
    assert usage.calls == IN_FLIGHT and usage.most == USAGE_THREADS
    db.dispose()
