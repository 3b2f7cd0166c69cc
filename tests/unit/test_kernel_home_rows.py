"""KernelHomes on SQLite and on PostgreSQL: taking a thread's home (and what it named before), refreshing it,
releasing only this worker's rows, the check of deleted threads and moved homes, writing back a missing row,
and many workers taking one thread at once (the row names one of them, nothing fails)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
from sqlmodel import SQLModel

from assistd.ids import now
from assistd.storage import tables  # noqa: F401  (registers every table)
from assistd.storage.db import Database
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.storage.threads import ThreadRow
from assistd.tools.code_interpreter.homes import KernelHomes, ThreadGone

_names = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    else:
        server = request.getfixturevalue("postgres")
        database = Database(server.new_database(f"homes{next(_names)}"))
    SQLModel.metadata.create_all(
        database.engine
    )  # the tables as the models say (migrations: test_migrations)
    yield database
    database.dispose()


def add_threads(db: Database, *ids: str) -> None:
    with db.session() as s:
        for thread_id in ids:
            s.add(ThreadRow(id=thread_id, project="p", created_at=now()))


def row(db: Database, thread_id: str) -> KernelHomeRow | None:
    with db.session() as s:
        return s.get(KernelHomeRow, thread_id)


def test_take_refresh_and_release(db):
    add_threads(db, "thread_1")
    a, b = KernelHomes(db, "worker-a"), KernelHomes(db, "worker-b")
    assert a.take("thread_1") is None
    first = row(db, "thread_1")
    assert first.worker_id == "worker-a" and abs(first.updated_at - db.now()) < 60  # the database's clock
    time.sleep(0.05)
    assert a.take("thread_1") == "worker-a"
    assert row(db, "thread_1").updated_at > first.updated_at
    assert b.take("thread_1") == "worker-a"  # moved
    a.release("thread_1")  # not A's any more: stays
    assert row(db, "thread_1").worker_id == "worker-b"
    b.release("thread_1")
    assert row(db, "thread_1") is None


def test_release_all_takes_only_this_workers_rows(db):
    add_threads(db, "thread_1", "thread_2", "thread_3")
    a, b = KernelHomes(db, "worker-a"), KernelHomes(db, "worker-b")
    a.take("thread_1")
    a.take("thread_2")
    b.take("thread_3")
    a.release_all()
    assert row(db, "thread_1") is None and row(db, "thread_2") is None
    assert row(db, "thread_3").worker_id == "worker-b"


def test_a_deleted_thread_has_no_home(db):
    add_threads(db, "thread_1", "thread_2")
    a = KernelHomes(db, "worker-a")
    a.take("thread_1")
    a.take("thread_2")
    with db.session() as s:
        s.delete(s.get(ThreadRow, "thread_1"))
    assert row(db, "thread_1") is None  # ON DELETE CASCADE
    with pytest.raises(ThreadGone):
        a.take("thread_1")
    found = a.check(["thread_1", "thread_2", "thread_never"])
    assert found.existing == {"thread_2"}
    assert found.homes == {"thread_2": "worker-a"}


def test_adopt_writes_only_missing_rows_of_existing_threads(db):
    add_threads(db, "thread_1", "thread_2")
    a, b = KernelHomes(db, "worker-a"), KernelHomes(db, "worker-b")
    b.take("thread_2")
    a.adopt(["thread_1", "thread_2", "thread_deleted"])
    assert row(db, "thread_1").worker_id == "worker-a"
    assert row(db, "thread_2").worker_id == "worker-b"  # never taken from another worker
    assert row(db, "thread_deleted") is None


def test_many_workers_taking_one_thread_at_once(db):
    add_threads(db, "thread_1")
    homes = [KernelHomes(db, f"worker-{i}") for i in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(homes))

    def take(home: KernelHomes) -> None:
        barrier.wait()
        try:
            for _ in range(5):
                home.take("thread_1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(h,)) for h in homes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert row(db, "thread_1").worker_id in {h.worker_id for h in homes}
