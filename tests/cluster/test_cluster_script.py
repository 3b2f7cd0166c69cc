"""scripts/cluster.sh itself: `start --detach` brings up PostgreSQL, `chroma run`, the engine, an API node
and two workers; a run made through the printed URL completes on a worker; `stop` ends every process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import openai
import pytest

from tests.contract.helpers import MODEL
from tests.support import ROOT, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.model]

SCRIPT = ROOT / "scripts" / "cluster.sh"


def test_cluster_script_starts_a_working_cluster_and_stops_it(tmp_path):
    env = {**os.environ, "API_PORT": str(free_port()), "TMPDIR": "/tmp", "PARALLEL": "2"}
    env.pop("ASSISTD_API_KEYS", None)
    started = subprocess.run(
        [str(SCRIPT), "start", "--detach"], capture_output=True, text=True, env=env, timeout=600
    )
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().splitlines()[-1]
    directory = started.stderr.split("logs and data in ", 1)[1].split()[0]
    pids = [int(line.split()[0]) for line in Path(directory, "pids").read_text().splitlines()]
    try:
        status = subprocess.run([str(SCRIPT), "status", directory], capture_output=True, text=True, env=env)
        ups = {line.split()[-1] for line in status.stdout.splitlines() if line.startswith("up ")}
        assert {"chroma", "engine", "api", "worker-1", "worker-2"} <= ups, status.stdout
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
        assistant = client.beta.assistants.create(model=MODEL, instructions="Answer briefly.")
        run = client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "Say hello."}]},
            max_completion_tokens=16,
            poll_interval_ms=200,
        )
        assert run.status in ("completed", "incomplete"), run.last_error
        assert client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0].content[0].text.value
    finally:
        stopped = subprocess.run(
            [str(SCRIPT), "stop", directory], capture_output=True, text=True, env=env, timeout=300
        )
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.exists(directory)
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid)]
    assert not alive, f"still running after stop: {alive}"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return "Z"
