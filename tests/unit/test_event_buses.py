"""What the event buses keep of a response's events, and for how long: the in-process EventBus's logs (ended
ones and silent ones pruned, a deleted response's forgotten) and the DatabaseBus's `response_events` (pruned
only once the response ended and its last event is old; a running response's kept however old), and the
last event's number a resumed stream compares `starting_after` with."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest
from sqlalchemy import update
from sqlmodel import select

from assistd.engine import events as events_module
from assistd.engine.event_log import RUN_EVENTS_KEEP_SECONDS, DatabaseBus
from assistd.engine.events import Event, EventBus
from assistd.engine.responses.events import END, KEEP_SECONDS, event
from assistd.storage.assistants import AssistantRow
from assistd.storage.clock import read_now
from assistd.storage.db import Database
from assistd.storage.responses import ResponseEventRow, ResponseRow
from assistd.storage.run_events import RunEventRow
from assistd.storage.runs import RunRow
from assistd.storage.threads import ThreadRow
from tests.unit.engine_support import PROJECT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(events_module, "time", fake)
    return fake


def _deliver(bus: EventBus, job_id: str, *names: str) -> None:
    for name in names:
        bus.deliver(job_id, Event(name, event(name) if name != END else None))


# ------------------------------------------------------------------------------------------- EventBus
def test_in_process_logs_number_events_and_tell_the_last(clock):
    bus = EventBus()
    assert bus.last_seq("resp_a") is None
    _deliver(bus, "resp_a", "response.created", "response.in_progress", "response.completed")
    assert bus.last_seq("resp_a") == 2
    bus.forget_log("resp_a")  # deleted: its events go at once
    assert bus.last_seq("resp_a") is None
    bus.forget_log("resp_never")  # nothing kept: nothing to do
    bus.deliver("run_a", Event("thread.run.created", {}))
    assert bus.last_seq("run_a") is None  # a run's events are not kept


def test_in_process_prune_drops_ended_and_silent_logs(clock):
    bus = EventBus()
    _deliver(bus, "resp_ended", "response.created", "response.completed")
    _deliver(bus, "resp_cancelled", "response.created", END)
    _deliver(bus, "resp_silent", "response.created", "response.in_progress")  # deleted mid-run: no end
    clock.now += KEEP_SECONDS - 1
    _deliver(bus, "resp_running", "response.created")
    assert bus.prune() == 0  # nothing is KEEP_SECONDS old yet
    clock.now += 2
    assert bus.prune() == 3
    assert [bus.last_seq(r) for r in ("resp_ended", "resp_cancelled", "resp_silent")] == [None] * 3
    assert bus.last_seq("resp_running") == 0
    clock.now += KEEP_SECONDS - 10
    _deliver(bus, "resp_running", "response.output_text.delta")  # a new event: kept from now on
    clock.now += 20
    assert bus.prune() == 0 and bus.last_seq("resp_running") == 1
    clock.now += KEEP_SECONDS
    assert bus.prune() == 1 and not bus._logs and not bus._ended and not bus._written


def test_in_process_prune_keeps_a_silent_log_a_stream_reads(clock):
    """A stream still reading a silent response keeps its numbering; the stream itself ends once the
    response is gone (api/sse.py looks at each keep-alive)."""
    bus = EventBus()
    loop = asyncio.new_event_loop()
    try:
        _deliver(bus, "resp_slow", "response.created")
        sub = bus.subscribe("resp_slow", loop, after=1)
        clock.now += KEEP_SECONDS + 1
        assert bus.prune() == 0 and bus.last_seq("resp_slow") == 0
        sub.close()
        assert bus.prune() == 1 and bus.last_seq("resp_slow") is None
    finally:
        loop.close()


# ---------------------------------------------------------------------------------------- DatabaseBus
@pytest.fixture
def db(each_db):  # SQLite and PostgreSQL (tests/conftest.py)
    return each_db


def _response(db: Database, response_id: str, status: str, events: int) -> None:
    bus = DatabaseBus(db)
    with db.session() as s:
        s.add(ResponseRow(id=response_id, project=PROJECT, created_at=1, model="m", status=status))
    with db.session() as s:
        bus.emit(s, response_id, [Event("response.created", event("response.created"))] * events)


def _age(db: Database, response_id: str, seconds: float, seqs: list[int] | None = None) -> None:
    """Makes the response's events (those numbered `seqs`: all) `seconds` older than now."""
    with db.session() as s:
        stamp = read_now(s) - seconds
        where = [ResponseEventRow.response_id == response_id]
        if seqs is not None:
            where.append(ResponseEventRow.seq.in_(seqs))  # type: ignore[attr-defined]
        s.execute(update(ResponseEventRow).where(*where).values(created_at=stamp))


def _kept(db: Database) -> dict[str, int]:
    with db.session() as s:
        rows = s.exec(select(ResponseEventRow.response_id, ResponseEventRow.seq)).all()
    kept: dict[str, int] = {}
    for response_id, _seq in rows:
        kept[response_id] = kept.get(response_id, 0) + 1
    return kept


def test_database_prune_keeps_running_responses_events(db):
    old = KEEP_SECONDS + 60
    for status in ("completed", "failed", "incomplete", "cancelled"):
        _response(db, f"resp_{status}", status, 3)
        _age(db, f"resp_{status}", old)
    _response(db, "resp_running", "in_progress", 3)  # events as old, still running: a stream resumes them
    _age(db, "resp_running", old)
    _response(db, "resp_queued", "queued", 1)
    _age(db, "resp_queued", old)
    _response(db, "resp_recent", "completed", 3)  # ended: its last event is recent
    _age(db, "resp_recent", old, seqs=[1, 2])
    _response(db, "resp_fresh", "completed", 2)
    assert DatabaseBus(db).prune() == 12
    assert _kept(db) == {"resp_running": 3, "resp_queued": 1, "resp_recent": 3, "resp_fresh": 2}


def test_database_prune_keeps_the_rule_for_run_events(db):
    run_id = "run_e"
    with db.session() as s:
        s.add(AssistantRow(id="asst_e", project=PROJECT, created_at=1, model="m"))
        s.add(ThreadRow(id="thread_e", project=PROJECT, created_at=1))
        s.flush()
        s.add(
            RunRow(
                id=run_id,
                project=PROJECT,
                thread_id="thread_e",
                assistant_id="asst_e",
                created_at=1,
                model="m",
            )
        )
    bus = DatabaseBus(db)
    with db.session() as s:
        bus.emit(s, run_id, [Event("thread.run.created", {})] * 2)
    with db.session() as s:  # a run's events go by their own age, whatever the run's state
        stamp = read_now(s) - RUN_EVENTS_KEEP_SECONDS - 5
        s.execute(update(RunEventRow).where(RunEventRow.seq == 1).values(created_at=stamp))
    assert bus.prune() == 1
    assert bus.last_seq(run_id) == 2  # a run's events are numbered from 1


def test_database_last_seq_and_a_deleted_responses_events(db):
    bus = DatabaseBus(db)
    _response(db, "resp_a", "in_progress", 4)
    assert bus.last_seq("resp_a") == 3  # as its stream numbers them: from 0
    assert bus.last_seq("resp_none") is None
    with db.session() as s:
        s.delete(s.get(ResponseRow, "resp_a"))
    assert bus.last_seq("resp_a") is None and _kept(db) == {}  # gone with its row
    with db.session() as s:  # and a write for it afterwards (its executor's last flush) writes nothing
        bus.emit(s, "resp_a", [Event("response.output_text.delta", event("response.output_text.delta"))])
    assert _kept(db) == {}


# ------------------------------------------------------------------------------------ subscriptions
def test_pushes_from_threads_wake_the_loop_once_per_burst():
    """The loop is woken only for a stream that waits, once for all that arrive while the wake-up is on its
    way, and the stream takes them all at once."""
    bus = EventBus()
    loop = asyncio.new_event_loop()
    wakes = []
    real = loop.call_soon_threadsafe
    loop.call_soon_threadsafe = lambda *args: wakes.append(args) or real(*args)  # type: ignore[method-assign]

    def burst(first: int, count: int) -> None:
        pusher = threading.Thread(
            target=lambda: [
                bus.deliver(run_id, Event("e", i))
                for i in range(first, first + count)
                for run_id in ("run_a", "run_b")
            ]
        )
        pusher.start()
        pusher.join()

    try:
        sub, other = bus.subscribe("run_a", loop), bus.subscribe("run_b", loop)
        burst(0, 1000)
        assert wakes == []  # no stream waits: each takes what is queued before it waits
        got = loop.run_until_complete(sub.queue.take())
        assert [e.data for e in got] == list(range(1000))  # all at once, in order
        assert other.queue.take_nowait() == got
        waiting = [loop.create_task(s.queue.take()) for s in (sub, other)]
        loop.run_until_complete(asyncio.sleep(0))  # both wait now
        burst(1000, 1000)
        assert len(wakes) == 1  # one wake-up for both streams and all their events
        for task in waiting:
            assert [e.data for e in loop.run_until_complete(task)] == list(range(1000, 2000))
        sub.close()
        other.close()
    finally:
        loop.close()


def test_events_from_many_threads_arrive_once_each_in_each_threads_order():
    async def go() -> list[Event]:
        bus = EventBus()
        sub = bus.subscribe("run_a", asyncio.get_running_loop())
        threads = [
            threading.Thread(
                target=lambda t=t: [bus.deliver("run_a", Event("e", (t, i))) for i in range(3000)]
            )
            for t in range(3)
        ]
        for thread in threads:
            thread.start()
        got: list[Event] = []
        while len(got) < 9000:
            got += await asyncio.wait_for(sub.queue.take(), timeout=30)
        for thread in threads:
            thread.join()
        assert sub.queue.empty()
        sub.close()
        return got

    got = asyncio.run(go())
    for t in range(3):
        assert [e.data[1] for e in got if e.data[0] == t] == list(range(3000))


def test_a_subscriber_whose_loop_closed_is_dropped():
    bus = EventBus()
    loop = asyncio.new_event_loop()
    sub = bus.subscribe("run_a", loop)
    bus.deliver("run_a", Event("e", 0))  # a wake-up on its way...
    loop.close()  # ... that never runs
    bus.deliver("run_a", Event("e", 1))
    assert bus.subscribers("run_a") == [] and sub.queue.qsize() == 2


def test_the_queue_reads_like_an_asyncio_queue():
    async def go() -> list:
        bus = EventBus()
        sub = bus.subscribe("run_a", asyncio.get_running_loop())
        sub.queue.put_nowait(Event("a", 1))
        bus.deliver("run_a", Event("b", 2))
        out = [
            sub.queue.qsize(),
            sub.queue.get_nowait().name,
            (await sub.queue.get()).name,
            sub.queue.empty(),
        ]
        asyncio.get_running_loop().call_later(0.01, bus.deliver, "run_a", Event("c", 3))
        out.append((await asyncio.wait_for(sub.queue.get(), timeout=10)).name)
        with pytest.raises(asyncio.QueueEmpty):
            sub.queue.get_nowait()
        sub.close()
        return out

    assert asyncio.run(go()) == [2, "a", "b", True, "c"]


def test_a_response_event_is_encoded_once_for_every_stream():
    bus = EventBus()
    _deliver(bus, "resp_a", "response.created")
    (kept,) = bus._logs["resp_a"]
    name, first = kept  # kept as its bytes: nothing the garbage collector walks
    assert name == "response.created" and first.startswith(b"event: response.created\ndata: {")
    gc.collect()
    assert not gc.is_tracked(kept)
    loop = asyncio.new_event_loop()
    try:  # a stream that resumes gets the same bytes, and the data read back from them
        again = bus.subscribe("resp_a", loop).queue.take_nowait()[0]
        assert again.sse() is first and again.data["sequence_number"] == 0
    finally:
        loop.close()
