"""What a run writes around its reply, on SQLite and on a real PostgreSQL: the message_creation step and its
message opened in one fenced write, the streamed text saved without an event, the reply's end (message, step,
run) in one fenced write with its events in order after the commit, and nothing of it from a worker that lost
the run. Also: the claim statements built once serve any worker and any limit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from assistd.engine.claims import ClaimQueue, LostClaim
from assistd.engine.events import Event, EventBus
from assistd.engine.store import RunStore, new_message_id
from assistd.protocol.messages import text_part
from assistd.storage.clock import read_now
from assistd.storage.db import Database
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow
from tests.unit.test_run_queue import _runs

DETAILS = {"type": "message_creation", "message_creation": {"message_id": ""}}
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


@pytest.fixture
def db(each_db):  # SQLite and PostgreSQL (tests/conftest.py)
    return each_db


class Recording(EventBus):
    """An in-process bus that keeps what it delivered (after each commit), by name."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any]] = []

    def deliver(self, run_id: str, event: Event) -> None:
        self.seen.append((event.name, event.payload()))

    def names(self) -> list[str]:
        return [name for name, _ in self.seen if not name.endswith(".delta")]


def _store(db: Database) -> RunStore:
    return RunStore(ClaimQueue(db, Recording(), lease_seconds=30))


def _rows(db: Database, run_id: str) -> tuple[RunRow, list[StepRow], list[MessageRow]]:
    with db.session() as s:
        run = s.get(RunRow, run_id)
        steps = list(s.query(StepRow).filter(StepRow.run_id == run_id))
        messages = list(s.query(MessageRow).filter(MessageRow.run_id == run_id))
        return run, steps, messages


def _started(db: Database) -> tuple[RunStore, RunRow]:
    (run_id,) = _runs(db, 1)
    store = _store(db)
    (claim,) = store.queue.claim_next("w1", 1)
    assert claim.run_id == run_id
    run = store.start(run_id)
    assert run.status == "in_progress" and run.started_at
    return store, run


def test_a_reply_opens_its_step_and_message_in_one_write(db):
    store, run = _started(db)
    message_id = new_message_id()
    step, _ = store.open_reply(run, message_id, DETAILS)
    _, steps, messages = _rows(db, run.id)
    assert [s.id for s in steps] == [step.id] and steps[0].status == "in_progress"
    assert [m.id for m in messages] == [message_id] and messages[0].status == "in_progress"
    assert messages[0].role == "assistant" and messages[0].thread_id == run.thread_id
    assert store.bus.names() == [  # type: ignore[attr-defined]
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
    ]


def test_the_start_happens_once(db):
    store, run = _started(db)
    again = store.start(run.id)
    assert again.status == "in_progress" and again.started_at == run.started_at
    assert store.bus.names() == ["thread.run.in_progress"]  # type: ignore[attr-defined]


def test_a_retried_insert_adds_nothing(db):
    """A retry after a commit whose answer was lost: the step and the message are there once."""
    store, run = _started(db)
    step, message = store.open_reply(run, new_message_id(), DETAILS)
    with db.session() as s:
        store._add_once(s, step)
        store._add_once(s, message)
    _, steps, messages = _rows(db, run.id)
    assert len(steps) == 1 and len(messages) == 1


def test_the_streamed_text_is_saved_without_an_event_and_the_end_is_one_write(db):
    store, run = _started(db)
    step, message = store.open_reply(run, new_message_id(), DETAILS)
    assert store.save_message(message, [text_part("Hello", [])]) is None
    _, _, (saved,) = _rows(db, run.id)
    assert saved.content[0]["text"]["value"] == "Hello" and saved.status == "in_progress"
    before = len(store.bus.names())  # type: ignore[attr-defined]

    assert store.close_reply(message, [text_part("Hello there", [])], step, DETAILS, USAGE, None, "completed")
    row, (done_step,), (done_message,) = _rows(db, run.id)
    assert done_message.status == "completed" and done_message.completed_at
    assert done_message.content[0]["text"]["value"] == "Hello there"
    assert done_step.status == "completed" and done_step.usage == USAGE and done_step.completed_at
    assert row.status == "completed" and row.usage == USAGE and row.completed_at
    assert row.worker_id is None and row.lease_until is None and row.expires_at is None
    assert store.bus.names()[before:] == [  # type: ignore[attr-defined]
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    assert not store.holds(run.id)
    assert not store.finish(run.id, "failed")  # ended: nothing changes
    assert _rows(db, run.id)[0].status == "completed"


def test_a_reply_cut_by_a_cap_ends_incomplete(db):
    store, run = _started(db)
    step, message = store.open_reply(run, new_message_id(), DETAILS)
    reason = {"reason": "max_completion_tokens"}
    cut = [text_part("Hel", [])]
    assert store.close_reply(message, cut, step, DETAILS, USAGE, None, "incomplete", reason)
    row, (done_step,), (done_message,) = _rows(db, run.id)
    assert done_message.status == "incomplete" and done_message.incomplete_details == {"reason": "max_tokens"}
    assert done_step.status == "completed"
    assert row.status == "incomplete" and row.incomplete_details == reason and row.usage == USAGE


def test_finish_closes_what_is_open_and_counts_its_usage(db):
    store, run = _started(db)
    step, _ = store.open_reply(run, new_message_id(), DETAILS)
    store.save_step(step, DETAILS, state={"usage": USAGE})
    error = {"code": "server_error", "message": "boom"}
    assert store.finish(run.id, "failed", error)
    row, (failed_step,), (cut,) = _rows(db, run.id)
    assert failed_step.status == "failed" and failed_step.failed_at and failed_step.last_error == error
    assert failed_step.usage == USAGE and row.usage == USAGE
    assert cut.status == "incomplete" and cut.incomplete_details == {"reason": "run_failed"}
    assert row.status == "failed" and row.last_error == error and row.failed_at
    assert store.bus.names()[-3:] == [  # type: ignore[attr-defined]
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
    ]


def test_a_worker_that_lost_the_run_writes_nothing_of_its_reply(db):
    store, run = _started(db)
    step, message = store.open_reply(run, new_message_id(), DETAILS)
    with db.session() as s:  # its lease runs out, and another worker takes the run over
        s.execute(update(RunRow).where(RunRow.id == run.id).values(lease_until=read_now(s) - 1))
    with db.session() as s:  # (as the sweeper would give an in_progress run back: queued, claimable)
        s.execute(update(RunRow).where(RunRow.id == run.id).values(status="queued"))
    other = _store(db)
    assert [c.run_id for c in other.queue.claim_next("w2", 1)] == [run.id]
    seen = len(store.bus.names())  # type: ignore[attr-defined]
    with pytest.raises(LostClaim):
        store.save_message(message, [text_part("late", [])])
    with pytest.raises(LostClaim):
        store.close_reply(message, [text_part("late", [])], step, DETAILS, USAGE, None, "completed")
    with pytest.raises(LostClaim):
        store.open_reply(run, new_message_id(), DETAILS)
    with pytest.raises(LostClaim):
        store.start(run.id)
    row, (open_step,), (open_message,) = _rows(db, run.id)
    assert row.status == "queued" and row.worker_id == "w2"
    assert open_step.status == "in_progress" and open_message.status == "in_progress"
    assert open_message.content == []
    assert len(store.bus.names()) == seen  # type: ignore[attr-defined]


def test_the_claim_statements_serve_any_worker_and_limit(db):
    ids = _runs(db, 5)
    queue = _store(db).queue
    assert [c.run_id for c in queue.claim_next("a", 2)] == ids[:2]
    assert [c.run_id for c in queue.claim_next("b", 1, run_id=ids[4])] == [ids[4]]
    assert [c.run_id for c in queue.claim_next("c", 5)] == ids[2:4]
    assert queue.claim_next("d", 5) == []
    with db.session() as s:
        holders = {r.id: (r.worker_id, r.epoch) for r in s.query(RunRow)}
    assert holders == {
        ids[0]: ("a", 1),
        ids[1]: ("a", 1),
        ids[2]: ("c", 1),
        ids[3]: ("c", 1),
        ids[4]: ("b", 1),
    }


def test_what_the_first_turn_reads_is_read_with_the_run_until_it_writes(db):
    (run_id,) = _runs(db, 1)
    store = _store(db)
    store.queue.claim_next("w1", 1)
    run = store.run(run_id, prefetch=True)
    with db.session() as s:  # (a thread's messages do not change under an active run: this shows the read)
        s.add(
            MessageRow(id="msg_late", project=run.project, thread_id=run.thread_id, created_at=1, role="user")
        )
    assert store.history(run) == [] and store.steps(run_id) == []
    assert store.tool_resources(run) == ({}, {})
    store.start(run_id)  # the run writes: what was read ahead is dropped
    assert [m.id for m in store.history(run)] == ["msg_late"]
    store.run(run_id, prefetch=True)
    store.drop(run_id)
    assert store._prefetched == {}
