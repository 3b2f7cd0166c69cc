"""Issue 10 §3 on the real model: runs waiting for the model say `queued`, and after a crash (`kill -9`) the
ones that never started are executed by the restarted server; the one cut mid-generation fails clearly."""

from __future__ import annotations

import time

import openai
import pytest

from tests.contract.helpers import MODEL
from tests.support import KEY_A, ServerProcess

pytestmark = pytest.mark.model

WAITING = 3
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}


def _until_terminal(c: openai.OpenAI, run, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        current = c.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
        if current.status in TERMINAL or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def test_runs_queued_behind_a_crash_are_executed_after_restart(tmp_path_factory):
    data = tmp_path_factory.mktemp("crash")
    lease = ["--run-lease-seconds", "4"]  # liveness is by lease alone: the next server waits it out
    first = ServerProcess(data, args=["--parallel", "1", *lease])  # one slot: the others wait queued
    try:
        c = openai.OpenAI(base_url=f"{first.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)
        assistant = c.beta.assistants.create(model=MODEL, instructions="Write at great length.")

        def start(max_tokens: int | None):
            thread = c.beta.threads.create(messages=[{"role": "user", "content": "Tell a very long story."}])
            return c.beta.threads.runs.create(
                thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=max_tokens
            )

        generating = start(None)
        waiting = [start(24) for _ in range(WAITING)]
        while not c.beta.threads.runs.steps.list(generating.id, thread_id=generating.thread_id).data:
            time.sleep(0.02)
        for run in waiting:  # they wait for the model: queued, not started
            seen = c.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
            assert seen.status == "queued" and seen.started_at is None, seen.status
    except BaseException:  # a failure before the crash must not leave the server running
        first.stop()
        raise
    first.proc.kill()  # a crash: no shutdown handler runs
    first.proc.wait()
    second = ServerProcess(data, args=lease)
    try:
        c = openai.OpenAI(base_url=f"{second.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)
        cut = _until_terminal(c, generating)
        assert cut.status == "failed" and cut.last_error.code == "server_error"
        for run in waiting:
            done = _until_terminal(c, run)
            assert done.status in ("completed", "incomplete"), (done.status, done.last_error)
            assert done.started_at is not None
            reply = c.beta.threads.messages.list(run.thread_id, run_id=run.id).data
            assert reply and reply[0].content[0].text.value.strip()
    finally:
        second.stop()
