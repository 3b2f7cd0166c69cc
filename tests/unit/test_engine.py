"""The run state machine and its events, with the scripted fake model (fast)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from assistd.engine.context import Conversation, fit
from assistd.engine.events import Event
from assistd.errors import ActiveRunConflict, InvalidRequest
from assistd.protocol.messages import MessageCreate
from assistd.storage.runs import RunRow
from tests.unit.engine_support import PROJECT, Recorder, build_rig

TEXT_RUN_EVENTS = [
    "thread.run.in_progress",
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
    "thread.message.delta",
    "thread.message.delta",
    "thread.message.delta",
    "thread.message.completed",
    "thread.run.step.completed",
    "thread.run.completed",
]


def test_text_run_completes_with_events_in_the_documented_order(tmp_path):
    rig = build_rig(tmp_path, ["Paris is nice."])
    thread_id, assistant_id = rig.thread(), rig.assistant(instructions="Be brief.")
    run = rig.create_run(thread_id, assistant_id)
    assert run.status == "queued" and run.expires_at == run.created_at + 600
    recorder = Recorder(rig.bus, run.id)
    rig.executor.execute(run.id, threading.Event())
    assert recorder.names() == TEXT_RUN_EVENTS
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "completed" and done.expires_at is None and done.completed_at
    assert done.usage["completion_tokens"] == 3 and done.usage["total_tokens"] == sum(
        done.usage[k] for k in ("prompt_tokens", "completion_tokens")
    )
    messages = rig.runs.messages.list(PROJECT, thread_id, _page(), run_id=run.id).data
    assert [m.content[0]["text"]["value"] for m in messages] == ["Paris is nice."]
    steps = rig.runs.list_steps(PROJECT, thread_id, run.id, _page()).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]
    assert steps[0].usage == done.usage
    assert "Be brief." in rig.backend.prompts[0] and "Hello?" in rig.backend.prompts[0]


def test_deltas_carry_increments_only(tmp_path):
    rig = build_rig(tmp_path, ["one two three"])
    thread_id, assistant_id = rig.thread(), rig.assistant()
    run = rig.create_run(thread_id, assistant_id)
    recorder = Recorder(rig.bus, run.id)
    rig.executor.execute(run.id, threading.Event())
    deltas = [
        e.payload()["delta"]["content"][0]["text"]["value"]
        for e in recorder.events()
        if e.name == "thread.message.delta"
    ]
    assert deltas == ["one", " two", " three"]


def test_overrides_replace_and_append_instructions(tmp_path):
    rig = build_rig(tmp_path, ["ok"])
    thread_id, assistant_id = rig.thread(), rig.assistant(instructions="A", temperature=0.5)
    run = rig.create_run(
        thread_id,
        assistant_id,
        instructions="B",
        additional_instructions="C",
        additional_messages=[{"role": "user", "content": "extra question"}],
        temperature=0.1,
        metadata={"k": "v"},
    )
    assert run.instructions == "B\n\nC" and run.temperature == 0.1 and run.metadata == {"k": "v"}
    rig.executor.execute(run.id, threading.Event())
    assert "extra question" in rig.backend.prompts[0] and "A" not in rig.backend.prompts[0].split("<user>")[0]


def test_one_active_run_per_thread(tmp_path):
    rig = build_rig(tmp_path)
    thread_id, assistant_id = rig.thread(), rig.assistant()
    run = rig.create_run(thread_id, assistant_id)
    with pytest.raises(ActiveRunConflict, match="already has an active run"):
        rig.create_run(thread_id, assistant_id)
    with pytest.raises(ActiveRunConflict, match="while a run"):
        rig.runs.messages.create(PROJECT, thread_id, MessageCreate.parse({"role": "user", "content": "x"}))
    rig.executor.execute(run.id, threading.Event())
    rig.create_run(thread_id, assistant_id)  # allowed again once the first ended


def test_max_completion_tokens_ends_incomplete(tmp_path):
    rig = build_rig(tmp_path, ["a b c d e f g h"])
    thread_id, assistant_id = rig.thread(), rig.assistant()
    run = rig.create_run(thread_id, assistant_id, max_completion_tokens=3)
    rig.executor.execute(run.id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "incomplete" and done.incomplete_details == {"reason": "max_completion_tokens"}
    message = rig.runs.messages.list(PROJECT, thread_id, _page(), run_id=run.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details == {"reason": "max_tokens"}
    assert message.content[0]["text"]["value"] == "a b c"


def test_cancel_stops_generation_and_closes_message_and_step(tmp_path):
    rig = build_rig(tmp_path, [" ".join(["word"] * 3000)], delay=0.01)  # 30 s, were it not cancelled
    rig.engine.start()
    try:
        thread_id, assistant_id = rig.thread(), rig.assistant()
        run = rig.create_run(thread_id, assistant_id)
        recorder = Recorder(rig.bus, run.id)
        rig.engine.launch(run.id)
        assert rig.backend.started.wait(30)
        time.sleep(0.05)
        asked = time.monotonic()
        assert rig.runs.request_cancel(PROJECT, thread_id, run.id).status == "cancelling"
        rig.engine.cancel(run.id)
        done = rig.wait(thread_id, run.id)
        assert time.monotonic() - asked < 15  # the cancel ended it, not its end (generous: a slow machine)
        assert done.status == "cancelled" and done.cancelled_at and done.expires_at is None
        message = rig.runs.messages.list(PROJECT, thread_id, _page(), run_id=run.id).data[0]
        assert message.status == "incomplete" and message.incomplete_details == {"reason": "run_cancelled"}
        step = rig.runs.list_steps(PROJECT, thread_id, run.id, _page()).data[0]
        assert step.status == "cancelled" and step.cancelled_at
        names = recorder.names()
        assert names[-3:] == [
            "thread.message.incomplete",
            "thread.run.step.cancelled",
            "thread.run.cancelled",
        ]
        with pytest.raises(InvalidRequest, match="Cannot cancel run with status 'cancelled'"):
            rig.runs.request_cancel(PROJECT, thread_id, run.id)
    finally:
        rig.engine.shutdown()


def test_cancel_of_a_queued_run_waiting_for_the_model(tmp_path):
    rig = build_rig(tmp_path, [" ".join(["w"] * 3000), "never"], delay=0.01)  # the first: 30 s
    # not started: no claim loop, so the runs are taken in the order launched here (the first gets the model)
    try:
        assistant_id = rig.assistant()
        t1, t2 = rig.thread(), rig.thread()
        first, second = rig.create_run(t1, assistant_id), rig.create_run(t2, assistant_id)
        rig.engine.launch(first.id)
        assert rig.backend.started.wait(30)
        rig.engine.launch(second.id)
        rig.runs.request_cancel(PROJECT, t2, second.id)
        rig.engine.cancel(second.id)
        assert rig.wait(t2, second.id).status == "cancelled"
        assert rig.runs.get(PROJECT, t1, first.id).status == "in_progress"  # it did not wait for the model
        assert len(rig.backend.prompts) == 1  # the cancelled run never reached the model
        rig.runs.request_cancel(PROJECT, t1, first.id)
        rig.engine.cancel(first.id)
        assert rig.wait(t1, first.id).status == "cancelled"
    finally:
        rig.engine.shutdown()


def test_expired_run_is_marked_by_the_sweeper(tmp_path):
    rig = build_rig(tmp_path)
    thread_id, assistant_id = rig.thread(), rig.assistant()
    run = rig.create_run(thread_id, assistant_id)
    with rig.db.session() as s:
        row = s.get(RunRow, run.id)
        row.expires_at = int(time.time()) - 1
        row.worker_id, row.lease_until = None, None
        s.add(row)
    rig.engine.tick()
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "expired" and done.expires_at is None


def test_orphans_with_an_expired_lease_are_recovered(tmp_path):
    rig = build_rig(tmp_path, ["resumed"])
    assistant_id = rig.assistant()
    t1, t2 = rig.thread(), rig.thread()
    queued, running = rig.create_run(t1, assistant_id), rig.create_run(t2, assistant_id)
    with rig.db.session() as s:
        for run_id, status in ((queued.id, "queued"), (running.id, "in_progress")):
            row = s.get(RunRow, run_id)
            row.status, row.worker_id, row.lease_until = status, "otherhost:42:aa", time.time() - 1
            s.add(row)
    rig.store.open_step(rig.store.run(running.id), "message_creation", {"type": "message_creation"})
    rig.engine.tick()
    assert rig.wait(t1, queued.id).status == "completed"  # never started: executed here
    assert rig.runs.get(PROJECT, t2, running.id).status == "failed"  # half done: failed clearly
    rig.engine.shutdown()


def test_truncation_drops_the_oldest_messages(tmp_path):
    rig = build_rig(tmp_path, n_ctx=200)
    history = [{"role": "user", "content": f"message {i} " + "pad " * 30} for i in range(20)]
    conversation = Conversation(system="sys", history=history)
    run = RunRow(
        id="r",
        project="p",
        thread_id="t",
        assistant_id="a",
        created_at=0,
        model="fake",
        truncation_strategy={"type": "auto", "last_messages": None},
    )
    prompt = fit(rig.backend, conversation, run, reserve=50, render=rig.backend.render)
    assert prompt.tokens <= 150 and prompt.dropped > 0
    assert "message 19" in prompt.text and "message 0 " not in prompt.text
    run.truncation_strategy = {"type": "last_messages", "last_messages": 2}
    prompt = fit(rig.backend, conversation, run, reserve=50, render=rig.backend.render)
    assert "message 18" in prompt.text and "message 17" not in prompt.text and prompt.dropped == 18


def test_event_payload_serialises_protocol_objects():
    assert Event("done", {"a": 1}).payload() == {"a": 1}


def _page():
    from assistd.protocol.common import PageQuery

    return PageQuery(limit=100, order="asc")


def _dead_pid() -> int:
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


def test_a_repeated_function_call_is_answered_from_the_earlier_results(tmp_path):
    call = '[{"name": "lookup", "arguments": {"q": "x"}}]</tool_call>'
    rig = build_rig(tmp_path, ["<tool_call>", call, "<tool_call>", call, "It is 42."])
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    thread_id, assistant_id = rig.thread("What is x?"), rig.assistant(tools=[tool])
    run = rig.create_run(thread_id, assistant_id)
    rig.executor.execute(run.id, threading.Event())
    parked = rig.runs.get(PROJECT, thread_id, run.id)
    assert parked.status == "requires_action"
    call_id = parked.required_action["submit_tool_outputs"]["tool_calls"][0]["id"]
    from assistd.protocol.runs import SubmitToolOutputs

    rig.runs.submit_tool_outputs(
        PROJECT,
        thread_id,
        run.id,
        SubmitToolOutputs.parse({"tool_outputs": [{"tool_call_id": call_id, "output": "42"}]}),
    )
    rig.executor.execute(run.id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "completed"
    message = rig.runs.messages.list(PROJECT, thread_id, _page(), run_id=run.id).data[0]
    assert message.content[0]["text"]["value"] == "It is 42."
    assert rig.backend.grammars[-1] is None  # the last request offered no tools


def test_cancel_while_waiting_for_tool_outputs(tmp_path):
    call = '[{"name": "lookup", "arguments": {"q": "x"}}]</tool_call>'
    rig = build_rig(tmp_path, ["<tool_call>", call])
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    thread_id, assistant_id = rig.thread(), rig.assistant(tools=[tool])
    run = rig.create_run(thread_id, assistant_id)
    rig.executor.execute(run.id, threading.Event())
    assert rig.runs.get(PROJECT, thread_id, run.id).status == "requires_action"
    recorder = Recorder(rig.bus, run.id)
    assert rig.runs.request_cancel(PROJECT, thread_id, run.id).status == "cancelling"
    rig.engine.cancel(run.id)
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "cancelled" and done.required_action is None and done.expires_at is None
    step = rig.runs.list_steps(PROJECT, thread_id, run.id, _page()).data[0]
    assert step.status == "cancelled" and step.cancelled_at
    assert recorder.names() == ["thread.run.step.cancelled", "thread.run.cancelled"]
