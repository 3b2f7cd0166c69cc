"""The database's rules under races between nodes (issue 12, breakage 1).

Two API-only nodes on one PostgreSQL database and no worker, so every run stays queued (active) and the
rules are checked on the API path alone: 100 rounds of `POST /threads/{id}/runs` sent to both nodes at the
same instant (a barrier between two threads) give exactly one 200 and one 400 each; 100 rounds of a run and
a message created at the same instant on the two nodes either let the message land before the run or refuse
it. "Before" is the order of the two commits in PostgreSQL: a trigger installed by the test records the
transaction of every run and message insert, and `pg_xact_commit_timestamp` (track_commit_timestamp is on in
tests/postgres.py) orders them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.cluster.harness import ACTIVE, Cluster
from tests.contract.helpers import MODEL
from tests.support import KEY_A

pytestmark = [pytest.mark.cluster]

ROUNDS = 100
HEADERS = {"Authorization": f"Bearer {KEY_A}", "OpenAI-Beta": "assistants=v2"}

INSERT_LOG = """
CREATE TABLE test_insert_log (tbl text NOT NULL, row_id text NOT NULL, xid xid8 NOT NULL);
CREATE FUNCTION test_log_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_insert_log VALUES (TG_TABLE_NAME, NEW.id, pg_current_xact_id());
  RETURN NEW;
END $$;
CREATE TRIGGER test_log_runs AFTER INSERT ON runs FOR EACH ROW EXECUTE FUNCTION test_log_insert();
CREATE TRIGGER test_log_messages AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION test_log_insert();
"""


@pytest.fixture(scope="module")
def api_pair(make_module_cluster) -> Cluster:
    cluster = make_module_cluster(("api", "api"))
    cluster.sql(INSERT_LOG)
    return cluster


@pytest.fixture(scope="module")
def assistant_id(api_pair) -> str:
    return api_pair.client().beta.assistants.create(model=MODEL, instructions="Answer briefly.").id


def at_once(requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    """Sends the (base_url, path, json) POSTs from one thread each, released together by a barrier."""
    barrier = threading.Barrier(len(requests))
    clients = [httpx.Client(base_url=url, headers=HEADERS, timeout=60) for url, _, _ in requests]
    for c in clients:  # connections opened before the barrier, so the POSTs leave together
        c.get("/health")

    def send(i: int) -> httpx.Response:
        _, path, body = requests[i]
        barrier.wait()
        return clients[i].post(f"/v1{path}", json=body)

    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(send, range(len(requests))))
    finally:
        for c in clients:
            c.close()


def assert_refused(response: httpx.Response, words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and words in error["message"], error


def double_active(cluster: Cluster) -> list[tuple]:
    return cluster.sql(
        "SELECT thread_id, count(*) FROM runs WHERE status = ANY(%s) GROUP BY thread_id HAVING count(*) > 1",
        list(ACTIVE),
    )


def test_two_runs_created_at_once_on_two_nodes_one_wins(api_pair, assistant_id):
    first, second = api_pair.api_nodes
    client = api_pair.client()
    outcomes = {}
    for i in range(ROUNDS):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": f"Round {i}."}])
        path, body = f"/threads/{thread.id}/runs", {"assistant_id": assistant_id}
        a, b = at_once([(first.base_url, path, body), (second.base_url, path, body)])
        codes = sorted([a.status_code, b.status_code])
        outcomes[codes[0], codes[1]] = outcomes.get((codes[0], codes[1]), 0) + 1
        assert codes == [200, 400], f"round {i}: {a.status_code} {a.text} / {b.status_code} {b.text}"
        assert_refused(a if a.status_code == 400 else b, "already has an active run")
        winner = (a if a.status_code == 200 else b).json()
        runs = client.beta.threads.runs.list(thread.id).data
        assert [r.id for r in runs] == [winner["id"]], f"round {i}: the refused run left a row"
    assert outcomes == {(200, 400): ROUNDS}
    assert double_active(api_pair) == []


def test_message_created_with_a_run_lands_before_it_or_is_refused(api_pair, assistant_id):
    first, second = api_pair.api_nodes
    client = api_pair.client()
    accepted = refused = 0
    for i in range(ROUNDS):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": f"Round {i}."}])
        run_node, message_node = (first, second) if i % 2 == 0 else (second, first)
        run, message = at_once(
            [
                (run_node.base_url, f"/threads/{thread.id}/runs", {"assistant_id": assistant_id}),
                (message_node.base_url, f"/threads/{thread.id}/messages", {"role": "user", "content": "Hi"}),
            ]
        )
        assert run.status_code == 200, f"round {i}: the run was refused: {run.text}"
        if message.status_code == 400:
            assert_refused(message, "while a run")
            refused += 1
            continue
        assert message.status_code == 200, f"round {i}: {message.status_code} {message.text}"
        accepted += 1
        committed = dict(
            api_pair.sql(
                "SELECT tbl, pg_xact_commit_timestamp(xid::text::xid) FROM test_insert_log "
                "WHERE row_id IN (%s, %s)",
                run.json()["id"],
                message.json()["id"],
            )
        )
        assert committed["messages"] < committed["runs"], (
            f"round {i}: message {message.json()['id']} committed at {committed['messages']}, "
            f"not before run {run.json()['id']} ({committed['runs']})"
        )
    assert accepted + refused == ROUNDS
    assert double_active(api_pair) == []
    print(f"messages: {accepted} landed before the run, {refused} refused")
