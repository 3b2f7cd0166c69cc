"""Streams across nodes (issue 12, breakage 8): a run created with stream=True on the API-only node is
executed by a worker, so every event reaches the stream through the database. The stream must hold every
event in order, nothing lost or repeated: its deltas add up to the stored message, its steps and message
are the run's own, each lifecycle event comes once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.contract.helpers import MODEL
from tests.contract.test_runs import TEXT_EVENTS as HEAD  # the opening events of a text run
from tests.support import KEY_A

pytestmark = [pytest.mark.cluster, pytest.mark.model]

HEADERS = {"Authorization": f"Bearer {KEY_A}", "OpenAI-Beta": "assistants=v2"}


def tail(status: str) -> list[str]:
    """The last events of a run that ended `status` (completed, or incomplete at max_completion_tokens)."""
    message = "completed" if status == "completed" else "incomplete"
    return [f"thread.message.{message}", "thread.run.step.completed", f"thread.run.{status}", "done"]


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(model=MODEL, instructions="Answer in two sentences.")


def stream_events(base_url: str, path: str, body: dict) -> list[tuple[str, object]]:
    events, name = [], None
    with httpx.stream("POST", f"{base_url}/v1{path}", json=body, headers=HEADERS, timeout=180) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
                events.append((name, data if data == "[DONE]" else json.loads(data)))
    return events


def check_stream(client, thread_id: str, events: list[tuple[str, object]]) -> None:
    names = [name for name, _ in events]
    run_id = events[0][1]["id"]
    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    assert run.status in ("completed", "incomplete"), run.last_error
    assert names[: len(HEAD)] == HEAD, names
    assert names[-4:] == tail(run.status), names
    middle = names[len(HEAD) : -4]
    assert middle and set(middle) == {"thread.message.delta"}, middle
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id).data
    messages = client.beta.threads.messages.list(thread_id, run_id=run_id).data
    assert len(steps) == 1 and len(messages) == 1
    by_name = dict(events)
    assert by_name["thread.run.step.created"]["id"] == steps[0].id
    assert by_name["thread.run.step.completed"]["id"] == steps[0].id
    assert by_name["thread.message.created"]["id"] == messages[0].id
    assert all(data["id"] == messages[0].id for name, data in events if name == "thread.message.delta")
    deltas = "".join(
        data["delta"]["content"][0]["text"]["value"]
        for name, data in events
        if name == "thread.message.delta"
    )
    stored = messages[0].content[0].text.value
    assert deltas == stored, f"stream text differs from the stored message:\n{deltas!r}\n{stored!r}"
    assert by_name[names[-4]]["content"][0]["text"]["value"] == stored
    streamed_usage = by_name[f"thread.run.{run.status}"]["usage"]
    assert streamed_usage["total_tokens"] == run.usage.total_tokens > 0
    assert streamed_usage["completion_tokens"] == run.usage.completion_tokens
    indexes = [
        data["delta"]["content"][0]["index"] for name, data in events if name == "thread.message.delta"
    ]
    assert set(indexes) == {0}


def test_stream_on_the_api_node_follows_a_run_executed_by_a_worker(cluster, client, assistant):
    api = next(n for n in cluster.api_nodes if n.role == "api")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Describe the sea."}])
    events = stream_events(
        api.base_url, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True}
    )
    check_stream(client, thread.id, events)


def test_concurrent_streams_on_every_api_node(cluster, client, assistant):
    """Eight streamed runs at once, each opened on an API node in turn while the workers share them."""
    nodes = cluster.api_nodes
    threads = [
        client.beta.threads.create(messages=[{"role": "user", "content": f"Describe place number {i}."}])
        for i in range(8)
    ]

    def one(i: int):
        node = nodes[i % len(nodes)]
        body = {"assistant_id": assistant.id, "stream": True, "max_completion_tokens": 80}
        return stream_events(node.base_url, f"/threads/{threads[i].id}/runs", body)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for thread, events in zip(threads, results, strict=True):
        check_stream(client, thread.id, events)


def test_create_thread_and_run_stream_on_the_api_node(cluster, client, assistant):
    api = next(n for n in cluster.api_nodes if n.role == "api")
    events = stream_events(
        api.base_url,
        "/threads/runs",
        {
            "assistant_id": assistant.id,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": "Hi"}]},
        },
    )
    assert events[0][0] == "thread.created"
    check_stream(client, events[0][1]["id"], events[1:])
