"""The run queue's database mechanisms, on SQLite and on a real PostgreSQL: claims (oldest first, each run
to one worker, kernel affinity), fencing (a worker that lost its claim writes nothing), the database's
clock, one active run per thread, and run events read back in order from another "node"."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from assistd.engine.claims import ClaimQueue, LostClaim
from assistd.engine.event_log import DatabaseBus
from assistd.engine.store import RunStore
from assistd.storage.clock import read_now
from assistd.storage.db import Database
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.storage.run_events import RunEventRow
from assistd.storage.runs import RunRow
from assistd.storage.workers import WorkerRow
from tests.unit.engine_support import PROJECT


@pytest.fixture
def db(each_db):  # SQLite and PostgreSQL (tests/conftest.py)
    return each_db


def _runs(db: Database, n: int) -> list[str]:
    from assistd.storage.assistants import AssistantRow
    from assistd.storage.threads import ThreadRow

    ids = []
    with db.session() as s:
        s.add(AssistantRow(id="asst_q", project=PROJECT, created_at=1, model="m"))
        for i in range(n):
            s.add(ThreadRow(id=f"thread_q{i}", project=PROJECT, created_at=1))
        s.flush()
        for i in range(n):
            run_id = f"run_q{i:03d}"
            s.add(
                RunRow(
                    id=run_id,
                    project=PROJECT,
                    thread_id=f"thread_q{i}",
                    assistant_id="asst_q",
                    created_at=100 + i,
                    model="m",
                )
            )
            ids.append(run_id)
    return ids


def _store(db: Database) -> RunStore:
    return RunStore(ClaimQueue(db, DatabaseBus(db), lease_seconds=30))


def test_workers_claim_disjoint_runs_oldest_first(db):
    ids = _runs(db, 12)
    a, b = _store(db), _store(db)
    got: dict[str, list[str]] = {}

    def claim(name: str, store: RunStore) -> None:
        got[name] = [c.run_id for c in store.queue.claim_next(name, 6)]

    threads = [threading.Thread(target=claim, args=(n, s)) for n, s in (("wa", a), ("wb", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got["wa"] + got["wb"]) == ids  # every run to exactly one worker
    assert not set(got["wa"]) & set(got["wb"])
    assert _store(db).queue.claim_next("wc", 5) == []  # nothing left: all held under live leases
    first = _store(db)
    with db.session() as s:
        s.execute(update(RunRow).values(worker_id=None, lease_until=None))
    assert [c.run_id for c in first.queue.claim_next("wd", 3)] == ids[:3]  # the oldest first


def test_a_worker_that_lost_its_claim_writes_nothing(db):
    (run_id,) = _runs(db, 1)
    old, new = _store(db), _store(db)
    (claim,) = old.queue.claim_next("old", 1)
    assert old.add_tool_round(run_id) == 1  # it holds the run: its writes go through
    with db.session() as s:  # its lease runs out (a pause, a partition)...
        s.execute(update(RunRow).where(RunRow.id == run_id).values(lease_until=read_now(s) - 1))
    (taken,) = new.queue.claim_next("new", 1)  # ... and another worker takes the run over
    assert taken.epoch == claim.epoch + 1
    with pytest.raises(LostClaim):
        old.add_tool_round(run_id)
    with pytest.raises(LostClaim):
        old.finish(run_id, "completed")
    assert old.queue.renew("old") == {run_id: None}
    row = new.run(run_id)
    assert row.tool_rounds == 1 and row.status == "queued" and row.worker_id == "new"
    assert new.finish(run_id, "completed")
    assert new.run(run_id).status == "completed"


def test_a_run_whose_kernel_lives_on_another_live_worker_waits_for_it(db):
    first, second = _runs(db, 2)
    with db.session() as s:
        now = read_now(s)
        s.add(WorkerRow(id="home", started_at=now, lease_until=now + 60))
        s.add(WorkerRow(id="gone", started_at=now, lease_until=now - 1))
        s.add(KernelHomeRow(thread_id="thread_q0", worker_id="home", updated_at=now))
        s.add(KernelHomeRow(thread_id="thread_q1", worker_id="gone", updated_at=now))
    other = _store(db)
    assert [c.run_id for c in other.queue.claim_next("other", 5)] == [second]  # its kernel's worker is dead
    assert [c.run_id for c in _store(db).queue.claim_next("home", 5)] == [first]


def test_the_database_refuses_a_second_active_run_on_a_thread(db):
    (run_id,) = _runs(db, 1)
    with pytest.raises(IntegrityError, match=r"ux_runs_active_thread|UNIQUE"), db.session() as s:
        s.add(
            RunRow(
                id="run_dup",
                project=PROJECT,
                thread_id="thread_q0",
                assistant_id="asst_q",
                created_at=9,
                model="m",
            )
        )
    with db.session() as s:
        s.execute(update(RunRow).where(RunRow.id == run_id).values(status="completed"))
    with db.session() as s:  # once the first has ended, a new run is fine
        s.add(
            RunRow(
                id="run_next",
                project=PROJECT,
                thread_id="thread_q0",
                assistant_id="asst_q",
                created_at=9,
                model="m",
            )
        )


def test_leases_use_the_database_clock(db):
    (run_id,) = _runs(db, 1)
    store = _store(db)
    store.queue.claim_next("w", 1)
    with db.session() as s:
        now = read_now(s)
        lease = s.get(RunRow, run_id).lease_until
    assert now + 25 < lease <= now + 31
    assert abs(now - time.time()) < 5  # this machine and its database agree; the lease came from the latter


def test_events_reach_a_stream_on_another_node_in_order(db):
    (run_id,) = _runs(db, 1)
    writer, reader_bus = _store(db), DatabaseBus(db, poll_seconds=0.05)
    writer.queue.claim_next("w", 1)
    loop = asyncio.new_event_loop()
    reader_bus.start()
    try:
        sub = reader_bus.subscribe(run_id, loop, after=0)
        writer.start(run_id)  # thread.run.in_progress, written with the state change
        for i in range(30):  # deltas, written in batches by the flusher, fenced like every write
            writer.bus.publish(run_id, "thread.message.delta", {"i": i})
        writer.add_tool_round(run_id)  # a state change flushes the deltas before it
        assert writer.finish(run_id, "completed")
        got: list = []
        deadline = time.monotonic() + 20
        while (not got or got[-1].name != "thread.run.completed") and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.05))
            while not sub.queue.empty():
                got.append(sub.queue.get_nowait())
        names = [e.name for e in got]
        assert names[0] == "thread.run.in_progress" and names[-1] == "thread.run.completed"
        assert [e.data["i"] for e in got if e.name == "thread.message.delta"] == list(range(30))
        with db.session() as s:
            seqs = [
                r.seq
                for r in s.query(RunEventRow).filter(RunEventRow.run_id == run_id).order_by(RunEventRow.seq)
            ]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == len(got)
        late = reader_bus.subscribe(run_id, loop, after=len(seqs) - 1)  # a stream that starts later
        deadline = time.monotonic() + 10
        while late.queue.empty() and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.05))
        assert late.queue.get_nowait().name == "thread.run.completed" and late.queue.empty()
    finally:
        reader_bus.stop()
        writer.bus.stop()
        loop.close()


def test_a_worker_sees_a_run_queued_elsewhere_by_a_read_long_before_its_poll(db):
    """Processes sharing one SQLite file cannot wake each other (no NOTIFY): a run one of them queued without
    room for it waited for another's poll (up to 2 s). A worker with `peek_seconds` looks at the queue by a
    read that often, and claims what waits."""
    from assistd.engine.worker import RunEngine

    store = _store(db)
    assert store.queue.waiting("wp") is False
    executed: list[str] = []
    done = threading.Event()

    class Kind:
        def execute(self, job_id: str, signal: object) -> None:
            executed.append(job_id)
            done.set()

    # a poll that never comes here, and no maintenance tick (it claims too): only the read can see the run
    kinds = {"run_": Kind()}
    engine = RunEngine(store.queue, kinds, "wp", 30, capacity=2, poll_seconds=600, peek_seconds=0.1)
    loop = threading.Thread(target=engine._claim_loop, daemon=True)
    loop.start()
    try:
        time.sleep(0.3)  # idle: it reads, claims nothing
        ids = _runs(db, 1)  # queued by "another process": nobody wakes this one
        assert store.queue.waiting("wp") is True
        assert done.wait(30)  # generous: a slow machine passes, only the 600 s poll would fail it
        assert executed == ids
        assert store.queue.waiting("wp") is False  # claimed: nothing waits
    finally:
        engine._stop.set()
        engine._wake.set()
        loop.join(5)
