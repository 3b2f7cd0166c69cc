"""Responses on a cluster (issue 18, "One engine, one store"): a response is a job of the same work queue as
a run. A stream opened on the API-only node follows a response executed by a worker, event by event through
the database, numbered from 0 without a gap; another API node resumes it after any event; a background
response whose worker is killed mid-generation ends cleanly on the survivor, never stuck in progress."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.cluster.harness import wait_for
from tests.contract.helpers import MODEL
from tests.support import KEY_A

pytestmark = [pytest.mark.cluster, pytest.mark.model]

HEADERS = {"Authorization": f"Bearer {KEY_A}"}
ENDED = ("completed", "incomplete", "failed", "cancelled")
LONG = "Write a very long story about the history of the sea, with many chapters."


def sse(method: str, url: str, **kwargs) -> list[tuple[str, dict]]:
    events, name = [], None
    with httpx.stream(method, url, headers=HEADERS, timeout=180, **kwargs) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
                assert data["type"] == name, (name, data)
                events.append((name, data))
    return events


def test_a_stream_on_the_api_node_follows_a_response_a_worker_executes(cluster, client):
    api, other = next(n for n in cluster.api_nodes if n.role == "api"), cluster.api_nodes[-1]
    body = {
        "model": MODEL,
        "input": "Describe the sea in two sentences.",
        "stream": True,
        "max_output_tokens": 60,
    }
    events = sse("POST", f"{api.base_url}/v1/responses", json=body)
    names = [name for name, _ in events]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert names[:2] == ["response.created", "response.in_progress"], names
    assert names[-1] in ("response.completed", "response.incomplete"), names
    final = events[-1][1]["response"]
    worker = cluster.sql("SELECT worker_id FROM responses WHERE id = %s", final["id"])
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    stored = client.responses.retrieve(final["id"])
    assert text == stored.output_text and text.strip()
    raw = httpx.get(f"{other.base_url}/v1/responses/{final['id']}", headers=HEADERS, timeout=30).json()
    assert raw == final  # the final event's response is what a later retrieve answers
    assert worker == [(None,)]  # ended: the claim is gone
    # Another API node resumes the stream after any event: the rest, in order, nothing repeated.
    cut = len(events) // 2
    url = f"{other.base_url}/v1/responses/{final['id']}?stream=true&starting_after={cut}"
    rest = sse("GET", url)
    assert [d["sequence_number"] for _, d in rest] == list(range(cut + 1, len(events)))
    assert [n for n, _ in rest] == names[cut + 1 :]


def test_a_background_response_whose_worker_is_killed_ends_on_the_survivor(make_cluster):
    cluster = make_cluster(("api", "worker"), args=["--run-lease-seconds", "3"])
    client = cluster.client()
    response = client.responses.create(
        model=MODEL, input=LONG, background=True, temperature=1.0, max_output_tokens=400
    )
    assert response.status in ("queued", "in_progress")
    wait_for(
        "text from worker A",
        lambda: cluster.sql(
            "SELECT 1 FROM response_events WHERE response_id = %s AND name = 'response.output_text.delta'",
            response.id,
        ),
        180,
    )
    cluster.node("worker-2").crash()
    cluster.start_node("worker")
    ended = wait_for(
        "the response to end",
        lambda: (r := client.responses.retrieve(response.id)).status in ENDED and r,
        300,
    )
    # It had begun its answer on A: the survivor fails it cleanly (its items are all ended).
    assert ended.status == "failed" and ended.error.code == "server_error", ended
    assert all(item.status != "in_progress" for item in ended.output if hasattr(item, "status"))
    # The queue goes on: a new response completes on the survivor.
    again = client.responses.create(model=MODEL, input="Say hi.", max_output_tokens=16)
    assert again.status in ("completed", "incomplete"), again.error
