"""`assistd serve --processes 2`: one box served by two assistd processes on one port, one shared
`assistd engine` for the bundled model and one `chroma run`, events through the (SQLite) database.

Proved through the official SDK: streamed runs complete whole on either process, both processes execute
runs (each holds half the engine's slots: seen on the runs' claims while they run), a stream follows a run
that the other process executes, file_search's store is shared, a killed process is started again, and
stopping the supervisor leaves no process behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.contract import test_runs as runs
from tests.contract.test_concurrency import streamed_run
from tests.remote_engine import MODEL_FILE
from tests.support import KEY_A, MODELS_DIR, ServerProcess, free_port, stop_process, wait_healthy, wait_until

pytestmark = [pytest.mark.contract, pytest.mark.model]

QUESTIONS = [
    "Name a color.",
    "What is two plus two?",
    "Say hello.",
    "Name a fruit.",
    "Name an animal.",
    "What day comes after Monday?",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("processes"), args=["--processes", "2", "--parallel", "4"])
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(
        model=runs.MODEL,
        name="processes",
        instructions="You are a helpful assistant. Answer in one sentence.",
    )


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:200]
    except OSError:
        return b""  # ended meanwhile


def serving_processes(server: ServerProcess) -> list[int]:
    """The assistd processes uvicorn started (not the engine, Chroma or kernels)."""
    found = []
    for pid in descendants(server.proc.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and Path(f"/proc/{pid}/stat").exists() and alive(pid):
            found.append(pid)
    return found


class ClaimWatch:
    """Samples which workers hold runs while a block runs (the runs table's claims, read-only)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.workers: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            while not self._stop.is_set():
                try:
                    rows = conn.execute("SELECT DISTINCT worker_id FROM runs WHERE worker_id IS NOT NULL")
                    self.workers |= {row[0] for row in rows}
                except sqlite3.OperationalError:
                    pass  # locked for a moment by a writer
                self._stop.wait(0.02)
        finally:
            conn.close()

    def __enter__(self) -> ClaimWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_streamed_runs_complete_on_both_processes(server, client, assistant):
    assert len(serving_processes(server)) == 2
    with ClaimWatch(server.data_dir / "assistd.db") as watch, ThreadPoolExecutor(len(QUESTIONS)) as pool:
        results = list(pool.map(lambda q: streamed_run(client, assistant.id, q), QUESTIONS))
    for result in results:
        run, names = result["run"], result["names"]
        assert run.status == "completed", (run.status, run.last_error, names)
        assert names[: len(runs.TEXT_EVENTS)] == runs.TEXT_EVENTS, names
        assert names[-len(runs.TEXT_TAIL) :] == runs.TEXT_TAIL, names
        # every delta arrived once and in order, whichever process executed the run
        assert result["text"] == result["final_text"] == result["stored_text"], result
    # 6 runs at once, 2 of the engine's 4 slots per process: both processes executed some
    assert len(watch.workers) >= 2, watch.workers


def test_polling_and_tool_outputs_reach_whichever_process(client, assistant):
    """Several requests of one run (create, polls, messages) land on either process."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Say hello."}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    for _ in range(6):  # new connections: the kernel hands them to either process
        assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "completed"
        listed = client.beta.threads.messages.list(thread.id)
        assert [m.role for m in listed.data] == ["assistant", "user"]


def test_file_search_store_is_shared(client, tmp_path):
    path = tmp_path / "lighthouse.txt"
    path.write_text("The lighthouse keeper of Brannock Point is named Ottoline Vey. " * 4)
    store = client.vector_stores.create(name="shared")
    with path.open("rb") as fh:
        batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=store.id, files=[fh])
    assert batch.file_counts.completed == 1, batch
    # the chunks are in the one `chroma run`: any process finds them
    for _ in range(4):
        page = client.vector_stores.search(store.id, query="Who keeps the lighthouse?")
        assert page.data and "Ottoline Vey" in page.data[0].content[0].text


def test_a_killed_process_is_started_again(server, client):
    before = serving_processes(server)
    os.kill(before[0], signal.SIGKILL)
    wait_until(
        lambda: len(serving_processes(server)) == 2 and before[0] not in serving_processes(server),
        "a new process in place of the killed one",
        timeout=180,
    )
    wait_until(lambda: _answers(client), "the API answering", timeout=180)


def _answers(client: openai.OpenAI) -> bool:
    try:
        client.models.list()
        return True
    except openai.APIConnectionError:
        return False


def test_role_other_than_all_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "assistd", "serve", "--processes", "2", "--role", "worker",
         "--data-dir", str(tmp_path), "--models-dir", str(MODELS_DIR), "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--processes starts processes of --role all" in done.stderr


def test_processes_that_fail_to_start_stop_the_box_with_an_error(tmp_path):
    """A serving process that cannot start (here: its files directory cannot be made) stops the box, which
    exits with an error, not 0 as after a signal; no engine, and Chroma by url: only the N processes start."""
    done = subprocess.run(
        [sys.executable, "-m", "assistd", "serve", "--processes", "2", "--port", "0",
         "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "no-models"),
         "--chroma-url", "http://127.0.0.1:9", "--files-dir", "/proc/no-such-dir/files"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "failed to start (its error is above); stopped" in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_leaves_no_process_behind(tmp_path, signum):
    """Stopped (SIGTERM: it stops its parts) or killed (SIGKILL: they die with it), nothing is left."""
    server = ServerProcess(tmp_path / "stop", args=["--processes", "2", "--parallel", "2"])
    try:
        parts = descendants(server.proc.pid)
        cmdlines = b" ".join(cmdline(pid) for pid in parts if alive(pid))
        assert b"engine" in cmdlines and b"chroma" in cmdlines and b"spawn_main" in cmdlines
        server.proc.send_signal(signum)
        server.proc.wait(60)
    finally:
        server.stop()
    deadline = time.monotonic() + 180  # the N processes shut down as on SIGTERM: slow on a loaded machine
    while any(alive(pid) for pid in parts) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: cmdline(pid) for pid in parts if alive(pid)}
    assert not left


def test_engine_stops_while_clients_keep_asking(tmp_path):
    """`assistd engine` whose output pipe is gone (a killed supervisor's) ends on SIGTERM within its grace
    while clients keep sending requests and wait for their answers without a timeout. llama.cpp's server,
    stopping, leaves a request that reaches it after its task queue ended unanswered and waits for that
    client to hang up: seen in CI as the engine of a `--processes` box left behind after the supervisor was
    killed (its processes, stopping too, were still asking it)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    engine = subprocess.Popen(
        [sys.executable, "-m", "assistd", "engine", str(MODEL_FILE), "--port", str(port), "--parallel", "1",
         "--n-ctx", "2048", "--kv-cache-bytes", str(256 * 1024 * 1024)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    done = threading.Event()

    def ask() -> None:
        with httpx.Client(timeout=None) as client:
            while not done.is_set():
                try:
                    client.get(f"{url}/slots")
                except httpx.HTTPError:
                    time.sleep(0.01)

    askers = [threading.Thread(target=ask, daemon=True) for _ in range(4)]
    try:
        assert engine.stdout is not None
        for line in engine.stdout:  # its address is printed once it listens
            if line.startswith(b"assistd engine:"):
                break
        engine.stdout.close()  # as a killed supervisor's end of the pipe (and unread output never fills it)
        wait_healthy(engine, url, lambda: "(its output went to the closed pipe)", "engine")
        for asker in askers:
            asker.start()
        time.sleep(1.0)
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=120)  # its grace is ENGINE_STOP_SECONDS; a stop that waits for them: forever
    finally:
        done.set()
        stop_process(engine)
