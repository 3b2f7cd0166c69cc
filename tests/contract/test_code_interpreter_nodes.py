"""The code interpreter across server processes: two real `assistd serve` processes on one database (a SQLite
file, then PostgreSQL). A run executes code (its kernel lands on whichever process ran it: the kernel_homes
row names it), the thread is deleted through the OTHER process, and the kernel process of the first is gone
within a bounded time (its home check sees the thread gone), with no row left behind. And when the node
holding a thread's kernel dies, the thread's next run gets a fresh kernel on the other node and the model
is told."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from sqlmodel import select

from assistd.storage.db import Database
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.tools.code_interpreter.homes import KERNEL_MOVED
from tests.sandbox_support import require_isolation
from tests.support import DEFAULT_MODEL, KEY_A, ServerProcess

pytestmark = pytest.mark.model

WAIT = 120  # seconds: bounded, generous on a shared 2-core box
# SQLite: the periodic home check (every second here) finds the deleted thread. PostgreSQL: the deletion's
# NOTIFY wakes the check; its period is an hour, so only the notification can end the kernel in time.
CHECK_SECONDS = {"sqlite": "1", "postgresql": "3600"}


def kernel_pids(server_pid: int) -> list[int]:
    """The ipykernel processes below a server process (through bwrap and the launcher)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"\0-m\0ipykernel_launcher\0" not in (entry / "cmdline").read_bytes():
                continue
            if server_pid in ancestors(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return seen


def homes(database: Database) -> dict[str, str]:
    with database.session() as s:
        return {row.thread_id: row.worker_id for row in s.exec(select(KernelHomeRow)).all()}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def nodes(request, tmp_path_factory):
    require_isolation()
    root = tmp_path_factory.mktemp("nodes")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'shared.sqlite'}"
    else:
        url = request.getfixturevalue("postgres").new_database(f"nodes_{root.name.replace('-', '_')}")
    started: list[ServerProcess] = []
    database = Database(url)
    try:
        for name in ("a", "b"):  # one after the other: the first creates the schema
            args = ["--kernel-pool-size", "0", "--code-home-check-seconds", CHECK_SECONDS[request.param]]
            started.append(ServerProcess(root / name, database_url=url, args=args))
        yield database, started
    finally:
        for server in started:
            server.stop()
        database.dispose()


def client_of(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=300)


def run_code(client: openai.OpenAI, assistant_id: str, thread_id: str, code: str) -> str:
    """Runs `code` through the model (forced code_interpreter call); returns the logs of the call."""
    client.beta.threads.messages.create(thread_id, role="user", content=f"Run this Python code: {code}")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        tool_choice={"type": "code_interpreter"},
        temperature=0,
        poll_interval_ms=200,
    )
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc").data
    calls = [c for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]
    assert calls and calls[0].type == "code_interpreter"
    return "".join(o.logs for c in calls for o in c.code_interpreter.outputs if o.type == "logs")


def new_assistant(client: openai.OpenAI) -> str:
    return client.beta.assistants.create(
        model=DEFAULT_MODEL,
        instructions="You run the user's Python code with the code_interpreter tool.",
        tools=[{"type": "code_interpreter"}],
    ).id


def test_deleting_a_thread_on_one_node_ends_its_kernel_on_the_other(nodes):
    database, servers = nodes
    first = client_of(servers[0])
    assistant_id = new_assistant(first)
    thread = first.beta.threads.create()
    assert "42" in run_code(first, assistant_id, thread.id, "print(6*7)")
    worker_id = homes(database).get(thread.id)
    assert worker_id is not None, "the kernel's home was not recorded"
    pid = int(worker_id.split(":")[1])
    holder = next(s for s in servers if s.proc.pid == pid)
    other = next(s for s in servers if s is not holder)
    assert len(kernel_pids(holder.proc.pid)) == 1 and kernel_pids(other.proc.pid) == []

    deleted = client_of(other).beta.threads.delete(thread.id)
    assert deleted.deleted
    assert thread.id not in homes(database)
    started = time.monotonic()
    while kernel_pids(holder.proc.pid):
        assert time.monotonic() < started + WAIT, f"the kernel on the other node still runs after {WAIT}s"
        time.sleep(0.2)
    print(f"kernel on the other node gone {time.monotonic() - started:.1f} s after the delete")
    assert "was deleted: shutting its kernel down" in holder.log()


def test_a_threads_runs_follow_its_kernel_whichever_node_gets_them(nodes):
    """The kernel lives on one node; the thread's next runs, created through the other node, are claimed by
    the kernel's node (claim affinity on kernel_homes): its variables are there, nothing is announced."""
    database, servers = nodes
    first = client_of(servers[0])
    assistant_id = new_assistant(first)
    thread = first.beta.threads.create()
    run_code(first, assistant_id, thread.id, "x = 41")
    holder_id = homes(database)[thread.id]
    holder = next(s for s in servers if s.proc.pid == int(holder_id.split(":")[1]))
    other = client_of(next(s for s in servers if s is not holder))
    for _ in range(2):
        logs = run_code(other, assistant_id, thread.id, "print(x)")
        assert "41" in logs and KERNEL_MOVED not in logs
        assert homes(database)[thread.id] == holder_id


def test_a_run_after_its_kernels_node_died_gets_a_fresh_kernel_and_is_told(nodes):
    """Runs last: it kills a node. The thread's kernel lives on one node, that node dies (kill -9); the
    thread's next run, through the other node, gets a fresh kernel and its output says so."""
    database, servers = nodes
    first = client_of(servers[0])
    assistant_id = new_assistant(first)
    thread = first.beta.threads.create()
    run_code(first, assistant_id, thread.id, "print(6*7)")
    holder_id = homes(database)[thread.id]
    holder = next(s for s in servers if s.proc.pid == int(holder_id.split(":")[1]))
    survivor = next(s for s in servers if s is not holder)
    holder.proc.kill()
    holder.proc.wait()
    logs = run_code(client_of(survivor), assistant_id, thread.id, "print(6*7)")
    assert KERNEL_MOVED in logs
    assert homes(database)[thread.id] != holder_id
    assert int(homes(database)[thread.id].split(":")[1]) == survivor.proc.pid
