"""SQLiteWriters: a process's writing transactions on a SQLite file take turns on a Python lock (handed over
at once) instead of sleeping in SQLite's busy handler; reads are never held back."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from assistd.storage.db import Database


def make(tmp_path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.session() as s:
        s.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)"))
        s.execute(text("INSERT INTO t VALUES (1, 0)"))
    return db


def writers(db: Database):
    return db.writers


def test_a_second_writer_waits_for_the_first_to_commit_and_a_reader_does_not(tmp_path):
    db = make(tmp_path)
    first_wrote, second_done, read = threading.Event(), threading.Event(), []

    def second() -> None:
        with db.session() as s:
            s.execute(text("UPDATE t SET v = v + 10 WHERE k = 1"))
        second_done.set()

    with db.session() as s:
        s.execute(text("UPDATE t SET v = v + 1 WHERE k = 1"))
        first_wrote.set()
        thread = threading.Thread(target=second)
        thread.start()
        with db.session() as r:  # a reader beside the open write: not held back (WAL)
            read.append(r.execute(text("SELECT v FROM t")).scalar_one())
        time.sleep(0.2)
        assert not second_done.is_set()  # it waits for this transaction
        assert writers(db)._lock.locked()
    thread.join(30)
    assert second_done.is_set()
    assert read == [0]
    with db.session() as s:
        assert s.execute(text("SELECT v FROM t")).scalar_one() == 11
    assert not writers(db)._lock.locked()  # given up at the end of each transaction
    db.dispose()


def test_a_rolled_back_write_gives_the_lock_up(tmp_path):
    db = make(tmp_path)
    try:
        with db.session() as s:
            s.execute(text("UPDATE t SET v = 5 WHERE k = 1"))
            raise RuntimeError("abandon")
    except RuntimeError:
        pass
    assert not writers(db)._lock.locked()
    with db.session() as s:
        assert s.execute(text("SELECT v FROM t")).scalar_one() == 0
    db.dispose()


def test_many_threads_writing_at_once_all_land(tmp_path):
    db = make(tmp_path)

    def bump() -> None:
        for _ in range(20):
            with db.session() as s:
                s.execute(text("UPDATE t SET v = v + 1 WHERE k = 1"))

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with db.session() as s:
        assert s.execute(text("SELECT v FROM t")).scalar_one() == 160
    assert not writers(db)._lock.locked()
    db.dispose()


def test_the_lock_is_free_once_committed_before_the_after_commit_work(tmp_path):
    """After-commit work (events, a Chroma call) never holds the other writers back."""
    from assistd.storage.db import after_commit

    db = make(tmp_path)
    seen = []
    with db.session() as s:
        s.execute(text("UPDATE t SET v = 7 WHERE k = 1"))
        assert writers(db)._lock.locked()
        after_commit(s, lambda: seen.append(writers(db)._lock.locked()))
    assert seen == [False]
    with db.session() as s:
        assert s.execute(text("SELECT v FROM t")).scalar_one() == 7  # committed
    db.dispose()
