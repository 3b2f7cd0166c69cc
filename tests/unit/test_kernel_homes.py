"""Code interpreter sessions in a cluster, with real sandboxed kernels and two interpreters (two workers) on
one SQLite database: the kernel_homes row follows each session, a run that lands on a worker without the
thread's kernel gets a fresh one and is told, a thread deleted anywhere ends its kernel, usage counts one
session per kernel."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlmodel import SQLModel, select

from assistd.config import Settings
from assistd.ids import now
from assistd.services.usage import CODE_SESSION, UsageService
from assistd.storage import tables  # noqa: F401  (registers every table)
from assistd.storage.db import Database
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.storage.threads import ThreadRow
from assistd.storage.usage import UsageEventRow
from assistd.tools.code_interpreter import CodeInterpreter
from assistd.tools.code_interpreter.homes import KERNEL_MOVED, KernelHomes
from tests.sandbox_support import require_isolation

WAIT = 60  # seconds: generous, the machine is shared


@pytest.fixture(scope="module", autouse=True)
def isolation():
    require_isolation()


@pytest.fixture
def db(tmp_path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    SQLModel.metadata.create_all(
        database.engine
    )  # the tables as the models say (migrations: test_migrations)
    yield database
    database.dispose()


@pytest.fixture
def workers(tmp_path) -> Iterator[Callable[..., CodeInterpreter]]:
    """Makes interpreters that each see the database through an engine of their own, as processes do."""
    made: list[tuple[CodeInterpreter, Database]] = []

    def make(worker_id: str, **settings) -> CodeInterpreter:
        database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
        options = {"kernel_pool_size": 0, "code_preload": "", "code_home_check_seconds": 0.2, **settings}
        interpreter = CodeInterpreter(Settings(**options), homes=KernelHomes(database, worker_id))
        interpreter.on_session_started = UsageService(database).record_code_session
        made.append((interpreter, database))
        return interpreter

    yield make
    for interpreter, database in made:
        interpreter.shutdown()
        database.dispose()


def add_thread(db: Database, thread_id: str) -> None:
    with db.session() as s:
        s.add(ThreadRow(id=thread_id, project="p", created_at=now()))


def home_of(db: Database, thread_id: str) -> KernelHomeRow | None:
    with db.session() as s:
        return s.get(KernelHomeRow, thread_id)


def sessions_counted(db: Database) -> int:
    with db.session() as s:
        return len(s.exec(select(UsageEventRow).where(UsageEventRow.kind == CODE_SESSION)).all())


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        time.sleep(0.1)


def test_the_home_row_follows_the_session(db, workers):
    a = workers("worker-a", code_max_sessions=1)
    add_thread(db, "thread_1")
    add_thread(db, "thread_2")
    assert home_of(db, "thread_1") is None
    assert not a.execute("p", "thread_1", "x = 1", []).error
    first = home_of(db, "thread_1")
    assert first is not None and first.worker_id == "worker-a"
    time.sleep(0.05)
    assert not a.execute("p", "thread_1", "x += 1", []).error
    assert home_of(db, "thread_1").updated_at > first.updated_at  # refreshed on use
    a.execute("p", "thread_2", "y = 1", [])  # beyond code_max_sessions: thread_1's session is evicted
    wait_for(lambda: home_of(db, "thread_1") is None, "the evicted session's row is removed")
    assert home_of(db, "thread_2").worker_id == "worker-a"
    a.close_session("thread_2")
    assert home_of(db, "thread_2") is None
    a.execute("p", "thread_2", "y = 2", [])
    a.shutdown()
    assert home_of(db, "thread_2") is None


def test_an_idle_session_removes_its_row(db, workers):
    a = workers("worker-a", kernel_idle_seconds=1)
    add_thread(db, "thread_idle")
    a.execute("p", "thread_idle", "z = 3", [])
    assert home_of(db, "thread_idle").worker_id == "worker-a"
    wait_for(lambda: home_of(db, "thread_idle") is None, "the idle session's row is removed")


def test_a_run_on_another_worker_gets_a_fresh_kernel_and_is_told(db, workers):
    a, b = workers("worker-a"), workers("worker-b")
    add_thread(db, "thread_m")
    a.execute("p", "thread_m", "x = 41\nopen('/mnt/data/a.txt', 'w').write('on a')", [])
    kernel_a = a.sessions["thread_m"].kernel
    result = b.execute("p", "thread_m", "print('x' in dir())", [("in.csv", b"a\n1\n")])
    assert "False" in result.logs and KERNEL_MOVED in result.logs
    assert home_of(db, "thread_m").worker_id == "worker-b"
    # A notices that the home moved and ends its kernel
    wait_for(lambda: "thread_m" not in a.sessions and not kernel_a.alive(), "worker A's kernel ends")
    # B's kernel is the thread's now: no note, variables kept, the input file placed again
    again = b.execute("p", "thread_m", "x = 1\nprint(open('/mnt/data/in.csv').read())", [])
    assert KERNEL_MOVED not in again.logs and "a\n1" in again.logs
    assert "True" in b.execute("p", "thread_m", "print('x' in dir())", []).logs
    # back on A: a fresh kernel again, told, and B's goes
    kernel_b = b.sessions["thread_m"].kernel
    back = a.execute("p", "thread_m", "print('x' in dir())", [])
    assert "False" in back.logs and KERNEL_MOVED in back.logs
    wait_for(lambda: "thread_m" not in b.sessions and not kernel_b.alive(), "worker B's kernel ends")
    assert home_of(db, "thread_m").worker_id == "worker-a"


def test_a_stale_row_naming_this_worker_is_told_too(db, workers):
    """The row outlived its session (its removal failed): the next session is a fresh kernel, and says so."""
    a = workers("worker-a")
    add_thread(db, "thread_s")
    with db.session() as s:
        s.add(KernelHomeRow(thread_id="thread_s", worker_id="worker-a", updated_at=0.0))
    assert KERNEL_MOVED in a.execute("p", "thread_s", "1", []).logs
    assert KERNEL_MOVED not in a.execute("p", "thread_s", "2", []).logs


def test_a_thread_deleted_elsewhere_ends_its_kernel(db, workers):
    a = workers("worker-a")
    add_thread(db, "thread_d")
    add_thread(db, "thread_keep")
    a.execute("p", "thread_d", "v = 1", [])
    a.execute("p", "thread_keep", "w = 1", [])
    kernel = a.sessions["thread_d"].kernel
    data_dir = kernel.plan.data_dir
    with db.session() as s:  # what another node's ThreadService.delete does
        s.delete(s.get(ThreadRow, "thread_d"))
    assert home_of(db, "thread_d") is None  # ON DELETE CASCADE
    wait_for(lambda: not kernel.alive() and not data_dir.exists(), "the deleted thread's kernel ends")
    assert "thread_d" not in a.sessions
    assert "thread_keep" in a.sessions and a.sessions["thread_keep"].kernel.alive()
    gone = a.execute("p", "thread_d", "print(1)", [])
    assert gone.error and "deleted" in gone.logs
    assert "thread_d" not in a.sessions


def test_a_missing_row_is_written_back(db, workers):
    a = workers("worker-a")
    add_thread(db, "thread_r")
    a.execute("p", "thread_r", "1", [])
    with db.session() as s:
        s.delete(s.get(KernelHomeRow, "thread_r"))
    wait_for(lambda: home_of(db, "thread_r") is not None, "the row is written back")
    assert home_of(db, "thread_r").worker_id == "worker-a"


def test_usage_counts_one_session_per_kernel(db, workers):
    a, b = workers("worker-a"), workers("worker-b")
    add_thread(db, "thread_u")
    for i in range(3):  # one kernel, several runs
        a.execute("p", "thread_u", f"n = {i}", [])
    assert sessions_counted(db) == 1
    b.execute("p", "thread_u", "1", [])  # the session moved: a new kernel
    assert sessions_counted(db) == 2
    b.execute("p", "thread_u", "2", [])
    assert sessions_counted(db) == 2
    key = b.sessions["thread_u"].usage_key
    # the same kernel counted again (a retry after a commit whose answer was lost, another process's engine)
    UsageService(db).record_code_session("p", "thread_u", key)
    assert sessions_counted(db) == 2


def test_code_still_runs_when_the_home_cannot_be_written(tmp_path, caplog):
    """The database refuses (here: it has no tables): the execution runs on this worker all the same."""
    empty = Database(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    interpreter = CodeInterpreter(
        Settings(kernel_pool_size=0, code_preload="", code_home_check_seconds=0.2),
        homes=KernelHomes(empty, "worker-a"),
    )
    try:
        result = interpreter.execute("p", "thread_x", "print(6*7)", [])
        assert not result.error and "42" in result.logs
        assert "kernel home of thread_x not recorded" in caplog.text
    finally:
        interpreter.shutdown()
        empty.dispose()


def test_a_wake_up_checks_at_once(db, workers):
    """What a database notification of a thread deletion does: the check runs now, not at its next period."""
    a = workers("worker-a", code_home_check_seconds=3600)
    add_thread(db, "thread_w")
    a.execute("p", "thread_w", "v = 1", [])
    kernel = a.sessions["thread_w"].kernel
    with db.session() as s:
        s.delete(s.get(ThreadRow, "thread_w"))
    time.sleep(1)
    assert kernel.alive()  # nothing looks before the period...
    a.wake("thread_w")
    wait_for(lambda: not kernel.alive() and "thread_w" not in a.sessions, "the woken check ends the kernel")
