"""Failover between workers (issue 12, breakage 6): a worker killed with SIGKILL mid-run, and a worker
paused with SIGSTOP until its lease ran out, then resumed.

Each test has a cluster of its own: an API node and worker A, with a short run lease; worker B is started
only once A is gone or paused, so the run is A's for certain and B is the survivor that takes it over."""

from __future__ import annotations

import time

import pytest

from tests.cluster.harness import TERMINAL, Cluster, wait_for
from tests.contract.helpers import MODEL

pytestmark = [pytest.mark.cluster, pytest.mark.model]

LEASE = ["--run-lease-seconds", "3"]
LONG = "Write a very long story about the history of the sea, with many chapters."
FILLER = " ".join(f"Note {i}: the tide table of harbour {i % 37} was checked." for i in range(200))


def small_cluster(make_cluster) -> tuple[Cluster, object]:
    cluster = make_cluster(("api", "worker"), args=LEASE)
    client = cluster.client()
    assistant = client.beta.assistants.create(model=MODEL, instructions="Write at great length.")
    return cluster, assistant


def finished(client, thread_id: str, run_id: str):
    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    return run if run.status in TERMINAL else None


def snapshot(client, thread_id: str, run_id: str) -> dict:
    """Everything a worker could still write for the run: status, error, usage, steps, messages' text."""
    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id).data
    messages = client.beta.threads.messages.list(thread_id, order="asc").data
    return {
        "run": (run.status, run.last_error, run.usage, run.completed_at, run.failed_at),
        "steps": [(s.id, s.status, s.usage, s.step_details.model_dump()) for s in steps],
        "messages": [(m.id, m.status, [c.model_dump() for c in m.content]) for m in messages],
    }


def reply_text(client, thread_id: str, run_id: str) -> str:
    messages = client.beta.threads.messages.list(thread_id, run_id=run_id).data
    return "".join(c.text.value for m in messages for c in m.content if c.type == "text")


def generating(client, assistant, max_tokens: int, tries: int = 3):
    """(thread, run): a run still generating once its reply's text has reached the database. A sampled story
    may end before its first text is saved (a second in): such a run cannot fail over, so another starts."""
    for _ in range(tries):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": LONG}])
        run = client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, temperature=1.0, max_completion_tokens=max_tokens
        )
        wait_for("text from worker A", lambda t=thread.id, r=run.id: reply_text(client, t, r), 180)
        if client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "in_progress":
            return thread, run
    raise AssertionError(f"each of {tries} replies had ended when its first text was seen")


def test_worker_killed_before_the_first_step_run_is_requeued_and_completed(make_cluster):
    cluster, assistant = small_cluster(make_cluster)
    client = cluster.client()
    worker_a = cluster.node("worker-2")
    # A long prompt: the worker claims the run, then the engine reads ~3000 tokens before the first one
    # out, which is when the run's first step opens. A is killed as soon as the database shows its claim.
    thread = client.beta.threads.create(messages=[{"role": "user", "content": FILLER + "\nSay hello."}])
    run = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=16
    )
    wait_for(
        "worker A to claim the run",
        lambda: cluster.sql("SELECT 1 FROM runs WHERE id = %s AND worker_id IS NOT NULL", run.id),
        180,
        every=0.005,
    )
    worker_a.crash()
    steps_at_kill = cluster.sql("SELECT count(*) FROM run_steps WHERE run_id = %s", run.id)[0][0]
    cluster.start_node("worker")
    run = wait_for("the run to end", lambda: finished(client, thread.id, run.id), 300)
    if steps_at_kill:  # A had started its message: the survivor fails the run cleanly
        assert run.status == "failed" and run.last_error.code == "server_error", run
    else:  # nothing was produced: re-queued and run again by the survivor
        assert run.status in ("completed", "incomplete"), run.last_error
        assert reply_text(client, thread.id, run.id).strip()
    assert all(m.status != "in_progress" for m in client.beta.threads.messages.list(thread.id).data)
    print(f"steps at the kill: {steps_at_kill}; the run ended {run.status}")


def test_worker_killed_mid_generation_run_fails_cleanly_never_stuck(make_cluster):
    cluster, assistant = small_cluster(make_cluster)
    client = cluster.client()
    thread, run = generating(client, assistant, 400)
    cluster.node("worker-2").crash()
    cluster.start_node("worker")
    run = wait_for("the run to end", lambda: finished(client, thread.id, run.id), 300)
    assert run.status == "failed" and run.last_error.code == "server_error", run
    for message in client.beta.threads.messages.list(thread.id).data:
        assert message.status != "in_progress", message
    # The thread is free again: a new run on it is accepted and completes on the survivor.
    again = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=16, poll_interval_ms=200
    )
    assert again.status in ("completed", "incomplete"), again.last_error


def test_paused_worker_that_lost_its_lease_writes_nothing_after_the_failover(make_cluster, engine):
    cluster, assistant = small_cluster(make_cluster)
    client = cluster.client()
    worker_a = cluster.node("worker-2")
    thread, run = generating(client, assistant, 300)
    worker_a.pause()
    try:
        cluster.start_node("worker")
        try:
            ended = wait_for("the survivor to end the run", lambda: finished(client, thread.id, run.id), 180)
        except AssertionError as exc:  # while A is still paused: what the survivor waits on
            raise AssertionError(f"{exc}\ndatabase sessions:\n{cluster.activity()}") from None
        assert ended.status == "failed" and ended.last_error.code == "server_error", ended
        before = snapshot(client, thread.id, run.id)
    finally:
        worker_a.resume()
    # A wakes up with tokens still to read from the engine and a claim it no longer holds. Wait until the
    # engine has nothing more to send it, and then some, before looking again.
    wait_for("the engine to go idle", lambda: engine.busy() == 0, 300, every=0.5)
    time.sleep(3)
    after = snapshot(client, thread.id, run.id)
    assert after == before, "the paused worker wrote for a run it had lost"
    assert worker_a.proc.poll() is None, "worker A died instead of giving the run up:\n" + worker_a.log()
