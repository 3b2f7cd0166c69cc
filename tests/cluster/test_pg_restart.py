"""A 3 s PostgreSQL restart while runs are in flight (issue 12, breakage 7): no run is lost, and the API
answers during the outage either after retrying or with a clear 503-class error, never a 500.

The cluster is one of its own (an API node and two workers); the restart is of the session's PostgreSQL,
which no other cluster uses at that moment (tests run one at a time)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.cluster.harness import TERMINAL, wait_for
from tests.contract.helpers import MODEL
from tests.support import KEY_A

pytestmark = [pytest.mark.cluster, pytest.mark.model]

RUNS = 6
HEADERS = {"Authorization": f"Bearer {KEY_A}", "OpenAI-Beta": "assistants=v2"}


def test_postgres_restart_mid_runs_loses_no_run_and_never_answers_500(make_cluster, postgres):
    cluster = make_cluster(("api", "worker", "worker"))
    client = cluster.client(max_retries=4)  # the SDK's own retries (429/5xx/connection) with backoff
    assistant = client.beta.assistants.create(model=MODEL, instructions="Write at great length.")
    threads = [
        client.beta.threads.create(messages=[{"role": "user", "content": f"Tell story number {i}."}])
        for i in range(RUNS)
    ]
    runs = [
        client.beta.threads.runs.create(
            thread_id=t.id, assistant_id=assistant.id, temperature=1.0, max_completion_tokens=120
        )
        for t in threads
    ]
    wait_for(
        "a run in progress",
        lambda: any(
            client.beta.threads.runs.retrieve(r.id, thread_id=r.thread_id).status == "in_progress"
            for r in runs
        ),
        180,
    )

    restart_done = threading.Event()

    def restart() -> None:
        try:
            postgres.restart(pause_seconds=3)
        finally:
            restart_done.set()

    restarter = threading.Thread(target=restart)
    restarter.start()
    # Plain requests (no retries) all through the outage: each answer is a 200 or a clear 503-class error.
    answers: list[tuple[int, str]] = []
    api = cluster.api_nodes[0]
    with httpx.Client(base_url=f"{api.base_url}/v1", headers=HEADERS, timeout=60) as http:
        while not restart_done.is_set() or len(answers) < 10:
            run = runs[len(answers) % RUNS]
            response = http.get(f"/threads/{run.thread_id}/runs/{run.id}")
            answers.append((response.status_code, response.text))
            time.sleep(0.1)
    restarter.join()
    bad = [(code, body[:300]) for code, body in answers if code not in (200, 502, 503, 504)]
    assert not bad, f"answers during the PostgreSQL restart: {bad}"
    for code, body in answers:
        if code != 200:
            error = httpx.Response(code, text=body).json()["error"]
            assert error["message"] and "Traceback" not in body, body
    print(
        f"during the outage: {sum(c == 200 for c, _ in answers)} x 200, "
        f"{sum(c != 200 for c, _ in answers)} x 503-class"
    )

    # The SDK, with its retries, gets through; every run ends as it would have without the outage.
    ended = [
        wait_for(
            f"run {r.id} to end",
            lambda r=r: (lambda x: x if x.status in TERMINAL else None)(
                client.beta.threads.runs.retrieve(r.id, thread_id=r.thread_id)
            ),
            300,
            every=0.5,
        )
        for r in runs
    ]
    lost = [(r.id, r.status, r.last_error) for r in ended if r.status not in ("completed", "incomplete")]
    assert not lost, f"runs lost to a 3 s PostgreSQL restart: {lost}\n{cluster.logs()}"
    for run in ended:
        messages = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data
        assert messages and all(m.status != "in_progress" for m in messages)
        assert messages[0].content[0].text.value.strip()
