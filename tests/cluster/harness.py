"""A cluster on one machine, as scripts/cluster.sh builds it: one PostgreSQL (tests/postgres.py), one
`chroma run`, one inference engine (`assistd engine`, tests/remote_engine.py) and several `assistd serve`
processes with `--role api|worker|all`, all on the same database, Chroma server and files dir, their model
served by the engine's `url`.

`RandomNodeTransport` sends every HTTP request to a random API node, so an `openai.OpenAI` client built on
it drives the whole cluster as a load balancer would."""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import openai
import psycopg

from tests.chroma import ChromaProcess
from tests.postgres import PostgresServer
from tests.remote_engine import EngineProcess, models_file
from tests.support import DEFAULT_MODEL, KEY_A, ServerProcess

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
TERMINAL = ("completed", "incomplete", "failed", "cancelled", "expired")
_names = itertools.count(1)


class Node(ServerProcess):
    """One `assistd serve --role ROLE` of a cluster."""

    def __init__(self, name: str, role: str, data_dir: Path, **kwargs) -> None:
        self.name = name
        self.role = role
        super().__init__(data_dir, role=role, **kwargs)

    @property
    def serves_api(self) -> bool:
        return self.role in ("api", "all")

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and state but runs nothing (a long pause, a frozen VM)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def crash(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __repr__(self) -> str:
        return f"<{self.name} {self.role} {self.base_url}>"


class Cluster:
    """assistd nodes on one database of `postgres`, sharing `chroma`, `engine` and one files dir."""

    def __init__(
        self,
        root: Path,
        postgres: PostgresServer,
        chroma: ChromaProcess,
        engine: EngineProcess,
        roles: Iterable[str] = ("api", "worker", "worker"),
        args: list[str] | None = None,
        database: str | None = None,
    ) -> None:
        self.root = root
        self.postgres = postgres
        self.chroma = chroma
        self.engine = engine
        self.database = database or f"cluster_{next(_names)}_{random.randrange(1 << 30)}"
        self.database_url = postgres.new_database(self.database)
        self.files_dir = root / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.models = models_file(root / "models.toml", DEFAULT_MODEL, engine.url)
        self.args = ["--kernel-pool-size", "0", *(args or [])]
        self.nodes: list[Node] = []
        self._count = itertools.count(1)
        try:
            self.start_nodes(list(roles))
        except BaseException:
            self.stop()
            raise

    def _node(self, role: str, args: list[str]) -> Node:
        name = f"{role}-{next(self._count)}"
        return Node(
            name,
            role,
            self.root / name,
            database_url=self.database_url,
            env={"ASSISTD_MODELS_FILE": str(self.models), "ASSISTD_CHROMA_URL": self.chroma.url},
            args=["--files-dir", str(self.files_dir), *self.args, *args],
        )

    def start_nodes(self, roles: list[str], args: list[str] | None = None) -> list[Node]:
        """Starts nodes at the same time (threads) and waits until every one answers /health."""
        started: list[Node | None] = [None] * len(roles)
        errors: list[BaseException] = []

        def start(i: int, role: str) -> None:
            try:
                started[i] = self._node(role, args or [])
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(i, role)) for i, role in enumerate(roles)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        nodes = [node for node in started if node is not None]
        self.nodes += nodes
        if errors:
            raise RuntimeError("nodes did not start:\n" + "\n".join(str(e) for e in errors))
        return nodes

    def start_node(self, role: str, args: list[str] | None = None) -> Node:
        return self.start_nodes([role], args)[0]

    @property
    def api_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.serves_api and n.proc.poll() is None]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role in ("worker", "all")]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def client(self, key: str = KEY_A, node: Node | None = None, **kwargs) -> openai.OpenAI:
        """An SDK client on `node`, or on a random API node per request."""
        kwargs = {"max_retries": 0, "timeout": 120, **kwargs}
        if node is not None:
            return openai.OpenAI(base_url=f"{node.base_url}/v1", api_key=key, **kwargs)
        return openai.OpenAI(
            base_url="http://cluster.invalid/v1",
            api_key=key,
            http_client=httpx.Client(transport=RandomNodeTransport(lambda: self.api_nodes), timeout=None),
            **kwargs,
        )

    def aclient(self, key: str = KEY_A, **kwargs) -> openai.AsyncOpenAI:
        kwargs = {"max_retries": 0, "timeout": 120, **kwargs}
        return openai.AsyncOpenAI(
            base_url="http://cluster.invalid/v1",
            api_key=key,
            http_client=httpx.AsyncClient(
                transport=AsyncRandomNodeTransport(lambda: self.api_nodes), timeout=None
            ),
            **kwargs,
        )

    def sql(self, query: str, *params) -> list[tuple]:
        """A query on the cluster's database, for checks the API cannot make (who holds a run)."""
        with psycopg.connect(self.postgres.dsn_for(self.database), autocommit=True) as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def activity(self) -> str:
        """The database's sessions now: who waits on what, who sits idle in a transaction."""
        try:
            rows = self.sql(
                "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, left(query, 160) "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        except psycopg.Error as exc:
            return f"(no activity: {exc})"
        return "\n".join(" | ".join(str(v) for v in row) for row in rows)

    def logs(self) -> str:
        return "\n".join(f"===== {n.name} ({n.role})\n{n.log()[-6000:]}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                node.resume()  # a paused node cannot handle SIGTERM
            node.stop()


def _pick(nodes: list[Node]) -> Node:
    if not nodes:
        raise httpx.ConnectError("no API node of the cluster is running")
    return random.choice(nodes)


def _to(request: httpx.Request, node: Node) -> None:
    target = httpx.URL(node.base_url)
    request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
    request.headers["host"] = f"{target.host}:{target.port}"


class RandomNodeTransport(httpx.BaseTransport):
    """Each request to a random node among `nodes()` (a load balancer with no stickiness)."""

    def __init__(self, nodes: Callable[[], list[Node]]) -> None:
        self.nodes = nodes
        self.inner = httpx.HTTPTransport()
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        node = _pick(self.nodes())
        self.sent.append(node.name)
        _to(request, node)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncRandomNodeTransport(httpx.AsyncBaseTransport):
    def __init__(self, nodes: Callable[[], list[Node]]) -> None:
        self.nodes = nodes
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _to(request, _pick(self.nodes()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class RandomNodeServer:
    """Stands in for the contract tests' `server` fixture: `base_url` is a random API node's at every
    access, so the tests that use httpx directly (raw SSE) spread over the nodes too."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def base_url(self) -> str:
        return _pick(self.cluster.api_nodes).base_url


def wait_for(what: str, check: Callable[[], object], timeout: float = 180, every: float = 0.1):
    """Polls `check` until it returns something truthy; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
