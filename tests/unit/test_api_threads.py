"""Synchronous routes run on a thread pool of `--api-threads`, not asyncio's default of min(32, CPUs + 4)
(6 threads on a 2-core server): many slow requests at once are all served, none waits for another's thread."""

from __future__ import annotations

import threading

import httpx
import uvicorn

from assistd.app import create_app
from assistd.config import Settings
from tests.support import free_port

AT_ONCE = 24  # more than asyncio's default pool on a machine of up to 20 cores
PATIENCE = 120  # seconds: generous, the machine is shared


def test_many_slow_sync_requests_are_served_at_once(tmp_path):
    settings = Settings(data_dir=tmp_path, kernel_pool_size=0, api_threads=32, api_keys={"sk-x": "p"})
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    inside = threading.Semaphore(0)
    release = threading.Event()
    try:
        for _ in range(PATIENCE * 10):
            if server.started:
                break
            release.wait(0.1)
        assert server.started, "the server did not start"
        service = app.state.container.assistants
        real_list = service.list

        def slow_list(*args, **kwargs):  # a slow database scan, say
            inside.release()
            release.wait(PATIENCE)
            return real_list(*args, **kwargs)

        service.list = slow_list
        url = f"http://127.0.0.1:{server.config.port}/v1/assistants"
        answers: list[int] = []

        def ask() -> None:
            answer = httpx.get(url, headers={"Authorization": "Bearer sk-x"}, timeout=PATIENCE)
            answers.append(answer.status_code)

        clients = [threading.Thread(target=ask) for _ in range(AT_ONCE)]
        for client in clients:
            client.start()
        got = 0
        while got < AT_ONCE and inside.acquire(timeout=30 if got else PATIENCE):
            got += 1
        assert got == AT_ONCE, f"only {got} of {AT_ONCE} requests got a thread at once"
        release.set()
        for client in clients:
            client.join(PATIENCE)
        assert answers == [200] * AT_ONCE
    finally:
        release.set()
        server.should_exit = True
        serving.join(PATIENCE)
