"""Run and message status tell the truth (issue 10 §3), with the scripted fake model (fast): the model's
reply cap ends a run `incomplete`, a run waiting for the model stays `queued`, and recovery executes a run
that never produced a step."""

from __future__ import annotations

import socket
import threading
import time

from assistd.engine.worker import LOST, RunEngine
from assistd.protocol.common import PageQuery
from assistd.storage.runs import RunRow
from tests.support import wait_until
from tests.unit.engine_support import MODEL, PROJECT, Recorder, build_rig
from tests.unit.test_engine import TEXT_RUN_EVENTS, _dead_pid


def _page() -> PageQuery:
    return PageQuery(limit=100, order="asc")


def test_the_model_reply_cap_ends_the_run_incomplete(tmp_path):
    rig = build_rig(tmp_path, ["a b c d e f g h"], model={"max_reply_tokens": 3})
    thread_id, assistant_id = rig.thread(), rig.assistant()
    run = rig.create_run(thread_id, assistant_id)  # no max_completion_tokens: the model's cap applies
    recorder = Recorder(rig.bus, run.id)
    rig.executor.execute(run.id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "incomplete" and done.incomplete_details == {"reason": "max_completion_tokens"}
    assert done.completed_at is None and done.usage["completion_tokens"] == 3
    message = rig.runs.messages.list(PROJECT, thread_id, _page(), run_id=run.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details == {"reason": "max_tokens"}
    assert message.content[0]["text"]["value"] == "a b c"
    names = recorder.names()
    assert names[-3:] == ["thread.message.incomplete", "thread.run.step.completed", "thread.run.incomplete"]


def test_a_reply_within_the_cap_completes(tmp_path):
    rig = build_rig(tmp_path, ["a b c"], model={"max_reply_tokens": 3})
    thread_id, assistant_id = rig.thread(), rig.assistant()
    run = rig.create_run(thread_id, assistant_id)
    rig.executor.execute(run.id, threading.Event())
    assert rig.runs.get(PROJECT, thread_id, run.id).status == "completed"


def test_a_run_waiting_for_the_model_stays_queued_until_it_gets_it(tmp_path):
    rig = build_rig(tmp_path, [" ".join(["w"] * 40), "Second answer."], delay=0.05)
    # not started: no claim loop, so the runs are taken in the order launched here
    try:
        assistant_id = rig.assistant()
        t1, t2 = rig.thread(), rig.thread()
        first, second = rig.create_run(t1, assistant_id), rig.create_run(t2, assistant_id)
        rig.engine.launch(first.id)
        assert rig.backend.started.wait(10)
        recorder = Recorder(rig.bus, second.id)
        rig.engine.launch(second.id)
        gate = rig.executor.loop.registry.gate(MODEL)
        assert gate is not None
        wait_until(lambda: gate.waiting == 1, "the second run to wait its turn for the model (one slot)")
        waiting = rig.runs.get(PROJECT, t2, second.id)
        assert waiting.status == "queued" and waiting.started_at is None
        assert recorder.names() == []
        assert rig.wait(t1, first.id, timeout=60).status == "completed"
        done = rig.wait(t2, second.id, timeout=60)
        assert done.status == "completed" and done.started_at is not None
        assert recorder.names() == TEXT_RUN_EVENTS[:5] + ["thread.message.delta"] * 2 + TEXT_RUN_EVENTS[-3:]
    finally:
        rig.engine.shutdown()


def test_the_run_starts_once_per_run_across_tool_rounds(tmp_path):
    call = '[{"name": "lookup", "arguments": {"q": "x"}}]</tool_call>'
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    rig = build_rig(tmp_path, ["<tool_call>", call, "Done."])
    thread_id, assistant_id = rig.thread(), rig.assistant(tools=[tool])
    run = rig.create_run(thread_id, assistant_id)
    recorder = Recorder(rig.bus, run.id)
    rig.executor.execute(run.id, threading.Event())
    names = recorder.names()
    assert names[0] == "thread.run.in_progress" and names.count("thread.run.in_progress") == 1
    assert names[-1] == "thread.run.requires_action"


def _orphan(rig, thread_id: str, assistant_id: str, holder: str, lease_until: float, with_step: bool):
    run = rig.create_run(thread_id, assistant_id)
    with rig.db.session() as s:
        row = s.get(RunRow, run.id)
        row.status, row.worker_id, row.lease_until = "in_progress", holder, lease_until
        row.started_at = int(time.time())
        s.add(row)
    if with_step:
        rig.store.open_step(rig.store.run(run.id), "message_creation", {"type": "message_creation"})
    return run


def test_recovery_requeues_a_run_that_produced_no_step(tmp_path):
    rig = build_rig(tmp_path, ["resumed"])
    assistant_id = rig.assistant()
    t1, t2 = rig.thread(), rig.thread()
    blank = _orphan(rig, t1, assistant_id, "otherhost:42:aa", time.time() - 1, with_step=False)
    begun = _orphan(rig, t2, assistant_id, "otherhost:42:aa", time.time() - 1, with_step=True)
    recorder = Recorder(rig.bus, blank.id)
    rig.engine.tick()
    try:
        done = rig.wait(t1, blank.id)
        assert done.status == "completed", done.last_error  # never produced anything: executed here
        assert recorder.names()[:2] == ["thread.run.queued", "thread.run.in_progress"]
        assert [
            m.content[0]["text"]["value"]
            for m in rig.runs.messages.list(PROJECT, t1, _page(), run_id=blank.id).data
        ] == ["resumed"]
        failed = rig.runs.get(PROJECT, t2, begun.id)
        assert failed.status == "failed" and failed.last_error == {"code": "server_error", "message": LOST}
    finally:
        rig.engine.shutdown()


def test_liveness_is_by_lease_alone_not_by_host_and_pid(tmp_path):
    """A run held by a process that looks dead from here (this host, a pid that does not exist) is left
    alone while its lease is live: in another pid namespace that pid means nothing. Once the lease runs out
    it is taken over."""
    rig = build_rig(tmp_path, ["after the lease"])
    assistant_id = rig.assistant()
    t1, t2 = rig.thread(), rig.thread()
    dead = f"{socket.gethostname()}:{_dead_pid()}:ff"
    lease_end = time.time() + 3
    blank = _orphan(rig, t1, assistant_id, dead, lease_end, with_step=False)
    begun = _orphan(rig, t2, assistant_id, dead, lease_end, with_step=True)
    rig.engine.start()
    try:
        rig.engine.tick()
        assert rig.store.run(blank.id).status == "in_progress"
        assert rig.store.run(begun.id).status == "in_progress"
        assert rig.wait(t1, blank.id, timeout=60).status == "completed"
        assert time.time() >= lease_end
        # the same sweep gave the blank run back and failed the begun one: the blank one may finish first
        assert rig.wait(t2, begun.id, timeout=60).status == "failed"
    finally:
        rig.engine.shutdown()


def test_a_clean_shutdown_gives_runs_that_never_started_back_to_the_queue(tmp_path):
    rig = build_rig(tmp_path, [" ".join(["w"] * 400), "Answered by the next server."], delay=0.02)
    assistant_id = rig.assistant()
    t1, t2 = rig.thread(), rig.thread()
    first, second = rig.create_run(t1, assistant_id), rig.create_run(t2, assistant_id)
    rig.engine.launch(first.id)
    assert rig.backend.started.wait(10)
    rig.engine.launch(second.id)
    wait_until(lambda: rig.executor.loop.registry.gate(MODEL).waiting == 1, "the second run to wait")
    wait_until(lambda: bool(rig.store.steps(first.id)), "the first run to begin its answer")
    rig.engine.shutdown()
    cut = rig.runs.get(PROJECT, t1, first.id)
    assert cut.status == "failed" and "shut down" in cut.last_error["message"]
    kept = rig.store.run(second.id)
    assert kept.status == "queued" and kept.worker_id is None and kept.started_at is None
    nxt = RunEngine(rig.store.queue, {"run_": rig.executor}, "host:2:bb", rig.settings.run_lease_seconds)
    nxt.start()
    try:
        nxt.tick()
        done = rig.wait(t2, second.id, timeout=60)
        assert done.status == "completed", done.last_error
    finally:
        nxt.shutdown()
