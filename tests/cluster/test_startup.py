"""Servers starting together on an empty PostgreSQL database (issue 12, breakage 2): the schema is made
once, under a lock, and every server comes up and serves. Ten rounds, each on a fresh database."""

from __future__ import annotations

import httpx
import pytest

from tests.contract.helpers import MODEL
from tests.support import KEY_A

pytestmark = [pytest.mark.cluster]

ROUNDS = 10


def test_two_servers_starting_together_on_an_empty_database_both_come_up(make_cluster):
    for i in range(ROUNDS):
        cluster = make_cluster(("api", "all"))  # started at the same time by threads, on a new database
        try:
            assert len(cluster.api_nodes) == 2, f"round {i}: {cluster.logs()}"
            made = cluster.client(node=cluster.api_nodes[0]).beta.assistants.create(model=MODEL, name=f"r{i}")
            seen = cluster.client(node=cluster.api_nodes[1]).beta.assistants.retrieve(made.id)
            assert seen.name == f"r{i}"
            for node in cluster.nodes:
                assert "Traceback" not in node.log(), f"round {i}, {node.name}:\n{node.log()}"
        finally:
            cluster.stop()


def test_api_node_serves_the_api_and_a_worker_only_health(cluster):
    """The roles: an `api` node answers /v1, a `worker` answers /health and nothing of the API."""
    headers = {"Authorization": f"Bearer {KEY_A}"}
    for node in cluster.nodes:
        assert httpx.get(f"{node.base_url}/health", timeout=30).status_code == 200, node
        answer = httpx.get(f"{node.base_url}/v1/assistants", headers=headers, timeout=30)
        if node.serves_api:
            assert answer.status_code == 200, (node, answer.text)
        else:
            assert answer.status_code == 404, (node, answer.status_code, answer.text)
