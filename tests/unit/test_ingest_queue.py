"""The ingestion queue in the database (services/ingest_queue.py) on SQLite and on PostgreSQL: batch claims
oldest first, no file claimed twice by concurrent workers, fencing by (worker, epoch), leases on the
database's clock, transient failures put back with a not-before time and failed after the last try."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import update

from assistd.ids import now
from assistd.services.ingest_queue import IngestQueue, Outcome, give_up_after, retry_delay
from assistd.storage.clock import read_now
from assistd.storage.db import Database
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.storage.vector_stores import VectorStoreRow

STORE = "vs_queue"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'q.db'}")
    else:
        server = request.getfixturevalue("postgres")
        database = Database(server.new_database(f"q_{uuid.uuid4().hex[:12]}"))
    database.create_schema()
    with database.session() as s:
        s.add(VectorStoreRow(id=STORE, project="p", created_at=now(), last_active_at=now()))
    yield database
    database.dispose()


def attach(db: Database, n: int, start: int = 0) -> list[str]:
    ids = [f"file-{i:04d}" for i in range(start, start + n)]
    with db.session() as s:
        for i, file_id in enumerate(ids):
            s.add(
                VectorStoreFileRow(
                    vector_store_id=STORE,
                    id=file_id,
                    project="p",
                    created_at=1000 + start + i,
                    filename=f"{file_id}.txt",
                )
            )
    return ids


def row(db: Database, file_id: str) -> VectorStoreFileRow:
    with db.session() as s:
        found = s.get(VectorStoreFileRow, (STORE, file_id))
        assert found is not None
        return found


def expire(db: Database, file_id: str) -> None:
    with db.session() as s:
        s.execute(update(VectorStoreFileRow).where(VectorStoreFileRow.id == file_id).values(lease_until=0.0))


def db_time(db: Database) -> float:
    with db.session() as s:
        return read_now(s)


def test_a_claim_takes_the_oldest_files_up_to_the_limit(db):
    ids = attach(db, 5)
    queue = IngestQueue(db, "w1", lease_seconds=60)
    claims = queue.claim(3)
    assert sorted(c.file_id for c in claims) == ids[:3]
    assert all((c.epoch, c.attempts, c.retries) == (1, 1, 0) for c in claims)
    held = row(db, ids[0])
    assert held.worker_id == "w1" and held.lease_until > db_time(db) + 50  # the database's clock
    assert sorted(c.file_id for c in queue.claim(10)) == ids[3:]
    assert queue.claim(10) == []  # everything is held


def test_concurrent_workers_never_claim_a_file_twice(db):
    ids = attach(db, 60)
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        queue = IngestQueue(db, worker)
        mine: list[str] = []
        try:
            barrier.wait()
            while batch := queue.claim(4):
                mine += [c.file_id for c in batch]
        except BaseException as exc:
            errors.append(exc)
        got[worker] = mine

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    claimed = [f for files in got.values() for f in files]
    assert sorted(claimed) == ids  # each file exactly once
    for worker, files in got.items():
        assert all(row(db, f).worker_id == worker for f in files)


def test_writes_are_fenced_by_worker_and_epoch(db):
    [file_id] = attach(db, 1)
    slow, fast = IngestQueue(db, "slow"), IngestQueue(db, "fast")
    [old] = slow.claim(1)
    expire(db, file_id)  # the slow worker paused past its lease
    [new] = fast.claim(1)
    assert new.epoch == old.epoch + 1
    assert slow.renew([old]) == [old] and old.lost
    assert slow.complete([Outcome(old, 3, 30)]) == []
    assert slow.fail(old, "server_error", "late") is False
    assert slow.retry_later([old], "late") == ([], [])
    slow.release([old])
    assert (row(db, file_id).worker_id, row(db, file_id).status) == ("fast", "in_progress")
    assert fast.renew([new]) == [] and not new.lost
    assert [o.claim for o in fast.complete([Outcome(new, 2, 20)])] == [new]
    done = row(db, file_id)
    assert (done.status, done.chunk_count, done.usage_bytes, done.lease_until) == ("completed", 2, 20, None)


def test_the_same_worker_is_fenced_across_a_reattach(db):
    [file_id] = attach(db, 1)
    queue = IngestQueue(db, "w1")
    [first] = queue.claim(1)
    with db.session() as s:  # attached again (vector_store_files.attach_in): back in the queue
        s.execute(
            update(VectorStoreFileRow)
            .where(VectorStoreFileRow.id == file_id)
            .values(worker_id=None, lease_until=None, attempts=0, status="in_progress")
        )
    [second] = queue.claim(1)
    assert second.epoch == first.epoch + 1
    assert queue.renew([first, second]) == [first]
    assert queue.complete([Outcome(first, 1, 1)]) == []
    assert row(db, file_id).status == "in_progress"


def test_a_transient_failure_puts_the_file_back_until_its_not_before_time(db):
    [file_id] = attach(db, 1)
    queue = IngestQueue(db, "w1", retry_attempts=3, first_retry_seconds=1.5, max_retry_seconds=1.5)
    [claim] = queue.claim(1)
    assert queue.retry_later([claim], "ConnectError: connection refused") == ([claim], [])
    waiting = row(db, file_id)
    assert (waiting.status, waiting.worker_id, waiting.retries, waiting.attempts) == (
        "in_progress",
        None,
        1,
        0,
    )
    assert waiting.not_before > db_time(db) + 0.5
    assert queue.claim(1) == []  # not before its time
    deadline = time.monotonic() + 30
    while not (again := queue.claim(1)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [c.file_id for c in again] == [file_id] and again[0].retries == 1
    assert queue.retry_later(again, "ConnectError: connection refused")[0] == again
    deadline = time.monotonic() + 30
    while not (last := queue.claim(1)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue.retry_later(last, "ConnectError: connection refused") == ([], last)  # third try: done
    failed = row(db, file_id)
    assert failed.status == "failed" and failed.retries == 3
    message = failed.last_error["message"]
    assert failed.last_error["code"] == "server_error"
    assert "file-0000.txt" in message and "3 times" in message and "connection refused" in message
    assert "unavailable" in message and "Attach the file again" in message


def test_release_makes_files_claimable_at_once_without_counting_a_crash(db):
    ids = attach(db, 2)
    queue = IngestQueue(db, "w1")
    claims = queue.claim(2)
    queue.release(claims)
    again = IngestQueue(db, "w2").claim(2)
    assert sorted(c.file_id for c in again) == ids and all(c.attempts == 1 for c in again)


def test_the_backoff_is_bounded():
    assert [retry_delay(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert give_up_after(10) == 5 + 10 + 20 + 40 + 80 + 160 + 300 + 300 + 300  # about 20 minutes


def test_what_a_worker_that_lost_a_file_cleans_up(db):
    a, b, c = attach(db, 3)
    slow, fast = IngestQueue(db, "slow"), IngestQueue(db, "fast")
    claims = {claim.file_id: claim for claim in slow.claim(3)}
    for file_id in (a, b):
        expire(db, file_id)
    taken = {claim.file_id: claim for claim in fast.claim(3)}
    assert set(taken) == {a, b}
    fast.complete([Outcome(taken[a], 1, 1)])  # a: completed by the worker that took it over
    assert slow.cleanup_for(claims[a]) == "keep"
    assert slow.cleanup_for(claims[b]) == "keep"  # b: being indexed by the other worker
    with db.session() as s:  # c: cancelled while the slow worker held it
        s.execute(update(VectorStoreFileRow).where(VectorStoreFileRow.id == c).values(status="cancelled"))
    assert slow.cleanup_for(claims[c]) == "delete_file"
    with db.session() as s:
        s.delete(s.get(VectorStoreFileRow, (STORE, c)))
    assert slow.cleanup_for(claims[c]) == "delete_file"  # detached
    with db.session() as s:
        s.delete(s.get(VectorStoreRow, STORE))
    assert slow.cleanup_for(claims[a]) == "drop_store"
