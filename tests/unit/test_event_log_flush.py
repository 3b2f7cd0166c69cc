"""The DatabaseBus writes the buffered deltas of all its streaming jobs in one transaction per flush, each
job fenced by its claim (issue 20: in a cluster a transaction and a NOTIFY per job per flush were most of
the worker's CPU per token): a job whose claim is lost loses its deltas alone, and a transaction that fails
gives way to one per job, so one job's failure never holds the others' events back. A reading node on
PostgreSQL reads all the jobs it was woken for in one query."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event

from assistd.engine.claims import LostClaim
from assistd.engine.event_log import DatabaseBus
from assistd.engine.events import Event
from assistd.storage.db import Database
from tests.unit.test_event_log_coalesce import _message_text, _out, _publish, _response, _run, _stored, _text

PIECES = ["one ", "two ", "three "]
WAIT = 10.0  # generous: only a flush that waits for its tick fails it, never a slow machine
FIVE = [*PIECES, "four ", "five "]


@pytest.fixture
def db(each_db):  # SQLite and PostgreSQL (tests/conftest.py)
    return each_db


def _statements(db: Database) -> tuple[list[str], list[int]]:
    """The statements the database is sent, and a count of commits, from now on."""
    sent: list[str] = []
    commits = [0]

    @event.listens_for(db.engine, "before_cursor_execute")
    def _sent(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    @event.listens_for(db.engine, "commit")
    def _committed(conn):
        commits[0] += 1

    return sent, commits


def _jobs(db: Database, n: int) -> list[str]:
    jobs = [_run(db, f"run_f{i}") for i in range(n - 1)]
    return [*jobs, _response(db, "resp_f")]


def _buffer(bus: DatabaseBus, jobs: list[str]) -> None:
    for job in jobs:
        if job.startswith("resp_"):
            _publish(bus, job, [_out("msg_r", p) for p in PIECES])
        else:
            _publish(bus, job, [_text(f"msg_{job}", p) for p in PIECES])


def _text_of(db: Database, job: str) -> str:
    rows = _stored(db, job)
    if job.startswith("resp_"):
        return "".join(data["delta"] for _, _, data in rows)
    return "".join(_message_text(data) for _, _, data in rows)


def test_one_flush_writes_every_jobs_deltas_in_one_transaction(db):
    jobs = _jobs(db, 5)
    bus = DatabaseBus(db)
    fenced: list[str] = []
    bus.fence = lambda s, job: fenced.append(job)
    notified: list[str] = []
    bus._notified = notified.append  # type: ignore[method-assign]
    _buffer(bus, jobs)
    sent, commits = _statements(db)
    bus.flush_all()
    assert commits[0] == 1
    assert sorted(fenced) == sorted(jobs)
    for job in jobs:
        assert _text_of(db, job) == "".join(PIECES)
        seq, _, data = _stored(db, job)[0]
        assert seq == 1  # each numbered from its own start
        if job.startswith("resp_"):
            assert data["sequence_number"] == 0
    assert sorted(notified) == sorted(jobs)  # this node's reader is told of each, after the commit
    if db.is_postgres:  # the other nodes: one statement notifies them of every job
        assert sum("pg_notify" in statement for statement in sent) == 1


def test_a_job_whose_claim_is_lost_loses_only_its_own_deltas(db):
    jobs = _jobs(db, 3)
    bus = DatabaseBus(db)
    gone = jobs[1]

    def fence(s, job):
        if job == gone:
            raise LostClaim(job)

    bus.fence = fence
    told: list[str] = []
    bus.on_lost = told.append
    _buffer(bus, jobs)
    bus.flush_all()
    assert told == [gone]
    assert _stored(db, gone) == []
    assert [_text_of(db, job) for job in jobs if job != gone] == ["".join(PIECES)] * 2
    bus.flush_all()  # nothing of the lost job comes back
    assert _stored(db, gone) == []


def test_when_the_shared_transaction_fails_each_job_is_written_on_its_own(db):
    jobs = _jobs(db, 4)
    bus = DatabaseBus(db)
    broken = jobs[2]
    asked: list[str] = []

    def fence(s, job):
        asked.append(job)
        if job == broken:
            raise RuntimeError("the database went away for this one")

    bus.fence = fence
    _buffer(bus, jobs)
    bus.flush_all()
    for job in jobs:
        if job != broken:
            assert _text_of(db, job) == "".join(PIECES)
    assert _stored(db, broken) == []  # kept for the next flush, not dropped
    assert asked.count(broken) == 2  # together, then on its own
    bus.fence = lambda s, job: None  # the outage is over
    bus.flush_all()
    assert _text_of(db, broken) == "".join(PIECES)
    assert all(len(_stored(db, job)) == 1 for job in jobs)  # nothing written twice


def _stream_of(bus: DatabaseBus, loop: asyncio.AbstractEventLoop, job: str, after: int) -> Any:
    return bus.subscribe(job, loop, after)


def _taken(sub: Any) -> list[Any]:
    got = []
    while True:
        try:
            got.append(sub.queue.get_nowait())
        except asyncio.QueueEmpty:
            return got


def test_a_reading_node_reads_every_job_it_was_woken_for_each_after_its_own_cursor(db, monkeypatch):
    jobs = _jobs(db, 4)
    writer = DatabaseBus(db)
    for job in jobs:  # five flushes: five rows each
        for piece in FIVE:
            _publish(writer, job, [_text("m", piece)] if job.startswith("run_") else [_out("r", piece)])
            writer.flush_all()
    reader = DatabaseBus(db)
    loop = asyncio.new_event_loop()
    try:
        afters = {job: i for i, job in enumerate(jobs)}  # streams resumed at different places
        subs = {job: _stream_of(reader, loop, job, after) for job, after in afters.items()}
        sent, _ = _statements(db)
        reader._read_all(jobs)
        loop.run_until_complete(asyncio.sleep(0))
        for job, sub in subs.items():
            got = _taken(sub)
            assert len(got) == 5 - afters[job]
            texts = [e.data["delta"] if job.startswith("resp_") else _message_text(e.data) for e in got]
            assert "".join(texts) == "".join(FIVE[afters[job] :])
        selects = [st for st in sent if st.lstrip().upper().startswith("SELECT")]
        assert len(selects) == (2 if db.is_postgres else len(jobs))  # runs and responses: a query each
        # A job with more than the limit is read again until it is done, and nothing is given twice,
        # skipped, or held back for the others.
        monkeypatch.setattr("assistd.engine.event_log.READ_LIMIT", 2)
        for i, job in enumerate(jobs):
            for _ in range(5 if i == 0 else 1):
                _publish(writer, job, [_text("m", "six ")] if job.startswith("run_") else [_out("r", "six ")])
                writer.flush_all()
        for job in jobs:
            reader._notified(job)
        for _ in range(10):
            with reader._deltas_lock:
                dirty, reader._dirty = reader._dirty, set()
            if not dirty:
                break
            reader._read_all(sorted(dirty))
        loop.run_until_complete(asyncio.sleep(0))
        for i, (job, sub) in enumerate(subs.items()):
            got = _taken(sub)
            assert len(got) == (5 if i == 0 else 1), job
            sub.close()
    finally:
        loop.close()


def test_a_jobs_first_delta_is_written_at_once_and_the_rest_at_the_flush_tick(db, monkeypatch):
    monkeypatch.setattr("assistd.engine.event_log.FLUSH_SECONDS", 60.0)  # a tick that never comes here
    job = _run(db, "run_first")
    bus = DatabaseBus(db)
    bus.start()
    try:
        _publish(bus, job, [_text("m", "first")])
        deadline = time.monotonic() + WAIT
        while not _stored(db, job) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [_message_text(d) for _, _, d in _stored(db, job)] == ["first"]  # not after 60 s
        _publish(bus, job, [_text("m", " second")])
        time.sleep(0.3)
        assert len(_stored(db, job)) == 1  # the stream's later deltas wait for the tick (merged there)
        bus.discard(job)  # its execution here ended: a later execution's first delta goes at once again
        _publish(bus, job, [_text("m", "again")])
        deadline = time.monotonic() + WAIT
        while len(_stored(db, job)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [_message_text(d) for _, _, d in _stored(db, job)] == ["first", "again"]
    finally:
        bus.stop()


def test_the_flush_and_the_lease_renewal_never_lock_rows_crosswise(db):
    # Both lock several of the process's job rows in one transaction, each in its own order: they take turns
    # on one lock (PostgreSQL would otherwise find a deadlock between them and abort one after a second).
    from assistd.engine.claims import ClaimQueue

    bus = DatabaseBus(db)
    queue = ClaimQueue(db, bus)
    assert bus.many_rows is queue.many_rows
    jobs = _jobs(db, 3)
    _buffer(bus, jobs)
    with queue.many_rows:  # a renewal under way: the flush waits for it, then writes every job
        done = threading.Event()
        flusher = threading.Thread(target=lambda: (bus.flush_all(), done.set()))
        flusher.start()
        assert not done.wait(0.3)
    assert done.wait(WAIT)
    flusher.join()
    assert all(_text_of(db, job) == "".join(PIECES) for job in jobs)


def test_a_stream_on_the_writing_node_gets_what_it_wrote_without_reading_it_back(db):
    """With several processes on one box a stream is most often in the process that executes its job: the
    rows that process commits go to that stream at once, and the job's rows are not read back. A stream that
    lacks earlier rows (another process wrote them, not read yet) is left to the reader, which gives it
    everything in order, once."""
    run, response = _run(db, "run_h"), _response(db, "resp_h")
    bus = DatabaseBus(db)  # not started: only what this test calls reads
    loop = asyncio.new_event_loop()
    try:
        subs = {job: _stream_of(bus, loop, job, 0) for job in (run, response)}
        bus._dirty.clear()  # (subscribing asks for a first read)
        sent, _ = _statements(db)
        _publish(bus, run, [_text("m", p) for p in PIECES])
        _publish(bus, response, [_out("r", p) for p in PIECES])
        bus.flush_all()
        with db.session() as s:  # a state change: its events after the deltas written before it
            _publish(bus, run, [_text("m", "four ")])
            bus.emit(s, run, [Event("thread.run.completed", {"id": run})])
        loop.run_until_complete(asyncio.sleep(0))
        got = _taken(subs[run])
        assert [e.name for e in got] == [*["thread.message.delta"] * 2, "thread.run.completed"]
        assert _message_text(got[0].data) + _message_text(got[1].data) == "".join(PIECES) + "four "
        answer = _taken(subs[response])
        assert [e.data["delta"] for e in answer] == ["".join(PIECES)]
        assert answer[0].data["sequence_number"] == 0  # numbered as the stored row is
        reads = [st for st in sent if st.lstrip().upper().startswith("SELECT") and "_events" in st]
        assert not reads  # nothing read back
        assert not bus._dirty  # ... nor the reader woken for them

        other = DatabaseBus(db)  # another process writes the job's next rows (its executor there)
        _publish(other, run, [_text("m", "five ")])
        other.flush_all()
        _publish(bus, run, [_text("m", "six ")])
        bus.flush_all()
        loop.run_until_complete(asyncio.sleep(0))
        assert _taken(subs[run]) == []  # not "six" before "five"
        assert run in bus._dirty  # the reader is woken for it
        bus._read_all([run])
        loop.run_until_complete(asyncio.sleep(0))
        assert [_message_text(e.data) for e in _taken(subs[run])] == ["five ", "six "]
        _publish(bus, run, [_text("m", "seven ")])  # and it is followed here again
        bus.flush_all()
        loop.run_until_complete(asyncio.sleep(0))
        assert [_message_text(e.data) for e in _taken(subs[run])] == ["seven "]
        _publish(bus, run, [_text("m", "nul\x00 ")])  # what it is handed is what the others read back
        bus.flush_all()  # (PostgreSQL keeps U+FFFD for a NUL)
        loop.run_until_complete(asyncio.sleep(0))
        assert [e.data for e in _taken(subs[run])] == [_stored(db, run)[-1][2]]
        for sub in subs.values():
            sub.close()
    finally:
        loop.close()
