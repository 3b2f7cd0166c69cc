"""Fixtures of the cluster tests: one PostgreSQL (the session's `postgres`), one `chroma run`, one engine,
and a cluster of assistd nodes on them. The contract fixtures `server`, `client`, `client_b` and `aclient`
are overridden here, so the contract tests imported into tests/cluster/ drive the cluster through a random
API node per request."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import openai
import pytest

from tests.cluster.harness import ChromaProcess, Cluster, RandomNodeServer
from tests.remote_engine import EngineProcess
from tests.support import KEY_B

# The shared cluster: an API-only node, two workers, and two nodes that do both.
ROLES = ("api", "worker", "worker", "all", "all")
CLUSTERS: list[Cluster] = []  # every cluster of the session, newest last, for the logs of a failed test


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed cluster test shows the logs of the nodes (of the three newest clusters)."""
    report = yield
    if report.when == "call" and report.failed:
        for cluster in CLUSTERS[-3:]:
            report.sections.append((f"nodes of {cluster.database}", cluster.logs()))
            report.sections.append((f"pg_stat_activity of {cluster.database}", cluster.activity()))
    return report


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def chroma(tmp_path_factory) -> Iterator[ChromaProcess]:
    proc = ChromaProcess(tmp_path_factory.mktemp("chroma") / "data")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def engine(tmp_path_factory) -> Iterator[EngineProcess]:
    """The cluster's one inference engine (SmolLM2 135M, 4 slots)."""
    proc = EngineProcess(tmp_path_factory.mktemp("engine"), parallel=4, n_ctx=4096)
    yield proc
    proc.stop()


@contextlib.contextmanager
def _cluster_factory(tmp_path_factory, postgres, chroma, engine) -> Iterator[Callable[..., Cluster]]:
    """Builds clusters (a fresh database each), stopped when the context ends."""
    made: list[Cluster] = []

    def make(roles=("api", "worker", "worker"), args: list[str] | None = None) -> Cluster:
        cluster = Cluster(
            tmp_path_factory.mktemp("cluster"), postgres, chroma, engine, roles=roles, args=args
        )
        made.append(cluster)
        CLUSTERS.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            with contextlib.suppress(Exception):
                cluster.stop()


@pytest.fixture
def make_cluster(tmp_path_factory, postgres, chroma, engine) -> Iterator[Callable[..., Cluster]]:
    """Clusters of a test's own, stopped after the test (idle nodes would load the machine)."""
    with _cluster_factory(tmp_path_factory, postgres, chroma, engine) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_cluster(tmp_path_factory, postgres, chroma, engine) -> Iterator[Callable[..., Cluster]]:
    with _cluster_factory(tmp_path_factory, postgres, chroma, engine) as make:
        yield make


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, postgres, chroma, engine) -> Iterator[Cluster]:
    """The shared cluster of the contract and stream tests."""
    with _cluster_factory(tmp_path_factory, postgres, chroma, engine) as make:
        yield make(ROLES)


@pytest.fixture(scope="session")
def server(cluster) -> RandomNodeServer:
    return RandomNodeServer(cluster)


@pytest.fixture(scope="session")
def client(cluster) -> openai.OpenAI:
    return cluster.client()


@pytest.fixture(scope="session")
def client_b(cluster) -> openai.OpenAI:
    return cluster.client(KEY_B)


@pytest.fixture
def aclient(cluster) -> openai.AsyncOpenAI:
    return cluster.aclient()
