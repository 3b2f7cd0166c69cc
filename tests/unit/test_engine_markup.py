"""Tool-call syntax never reaches a message (issue 10 §2), with the scripted fake model (fast).

The fake model has no chat template: the engine uses the generic format (`<tool_call>[...]</tool_call>`)."""

from __future__ import annotations

import threading

from assistd.protocol.common import PageQuery
from assistd.protocol.runs import SubmitToolOutputs
from tests.unit.engine_support import PROJECT, Recorder, build_rig

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}
CALL = '[{"name": "lookup", "arguments": {"q": "x"}}]</tool_call>'
MARKUP = ("<tool_call>", "</tool_call>", '{"name"')


def _page() -> PageQuery:
    return PageQuery(limit=100, order="asc")


def _texts(rig, thread_id: str, run_id: str) -> list[str]:
    messages = rig.runs.messages.list(PROJECT, thread_id, _page(), run_id=run_id).data
    return [m.content[0]["text"]["value"] for m in messages]


def _streamed(recorder: Recorder) -> str:
    return "".join(
        part["text"].get("value", "")
        for event in recorder.events()
        if event.name == "thread.message.delta"
        for part in event.payload()["delta"]["content"]
        if part.get("type") == "text"
    )


def _answer_lookup(rig, thread_id: str, run_id: str, output: str = "42") -> None:
    parked = rig.runs.get(PROJECT, thread_id, run_id)
    assert parked.status == "requires_action", parked.last_error
    call_id = parked.required_action["submit_tool_outputs"]["tool_calls"][0]["id"]
    rig.runs.submit_tool_outputs(
        PROJECT,
        thread_id,
        run_id,
        SubmitToolOutputs.parse({"tool_outputs": [{"tool_call_id": call_id, "output": output}]}),
    )


def _loop_guard_rig(tmp_path, final_reply: str):
    """A run whose model repeats its answered call, so the engine asks it again without tools; the model
    then replies `final_reply`."""
    rig = build_rig(tmp_path, ["<tool_call>", CALL, "<tool_call>", CALL, final_reply])
    thread_id, assistant_id = rig.thread("What is x?"), rig.assistant(tools=[LOOKUP])
    run = rig.create_run(thread_id, assistant_id)
    rig.executor.execute(run.id, threading.Event())
    _answer_lookup(rig, thread_id, run.id)
    return rig, thread_id, run.id


def test_without_tools_the_call_markers_are_stop_strings(tmp_path):
    rig, thread_id, run_id = _loop_guard_rig(tmp_path, "It is 42. <tool_call>" + CALL)
    recorder = Recorder(rig.bus, run_id)
    rig.executor.execute(run_id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, run_id)
    assert done.status == "completed", done.last_error
    assert _texts(rig, thread_id, run_id) == ["It is 42."]
    assert _streamed(recorder) == "It is 42."  # the space before the markup is never streamed
    assert rig.backend.grammars[-1] is None  # the last request offered no tools
    assert "<tool_call>" in rig.backend.stops[-1] and '{"name": "lookup"' in rig.backend.stops[-1]


def test_without_tools_earlier_calls_are_not_shown_in_tool_syntax(tmp_path):
    rig, _thread, run_id = _loop_guard_rig(tmp_path, "It is 42.")
    rig.executor.execute(run_id, threading.Event())
    last_prompt = rig.backend.prompts[-1]
    assert not any(marker in last_prompt for marker in MARKUP), last_prompt
    assert "Result of lookup: 42" in last_prompt  # the result is still there, as plain text
    assert "<tool_call>" in rig.backend.prompts[0]  # while tools are offered, the format is shown


def test_a_reply_that_is_only_tool_syntax_fails_the_run_clearly(tmp_path):
    rig, thread_id, run_id = _loop_guard_rig(tmp_path, "<tool_call>" + CALL)
    rig.executor.execute(run_id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, run_id)
    assert done.status == "failed"
    assert done.last_error["code"] == "server_error" and "no answer" in done.last_error["message"]
    assert all(not any(m in text for m in MARKUP) for text in _texts(rig, thread_id, run_id))


def test_a_call_opened_mid_reply_is_parsed_and_its_preamble_kept_as_text(tmp_path):
    rig = build_rig(tmp_path, ["Let me check. <tool_call>" + CALL, CALL])
    thread_id, assistant_id = rig.thread("What is x?"), rig.assistant(tools=[LOOKUP])
    run = rig.create_run(thread_id, assistant_id)
    recorder = Recorder(rig.bus, run.id)
    rig.executor.execute(run.id, threading.Event())
    parked = rig.runs.get(PROJECT, thread_id, run.id)
    assert parked.status == "requires_action"
    calls = parked.required_action["submit_tool_outputs"]["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [("lookup", '{"q": "x"}')]
    assert _streamed(recorder).strip() == "Let me check."
    assert _texts(rig, thread_id, run.id) == ["Let me check."]
    messages = rig.runs.messages.list(PROJECT, thread_id, _page(), run_id=run.id).data
    assert messages[0].status == "completed"
    steps = rig.runs.list_steps(PROJECT, thread_id, run.id, _page()).data
    assert [(s.type, s.status) for s in steps] == [
        ("message_creation", "completed"),
        ("tool_calls", "in_progress"),
    ]


def test_an_unparsable_call_under_auto_never_becomes_message_text(tmp_path):
    broken = 'Sure. <tool_call>[{"name": "lookup", "arguments": {"q": </tool_call>'
    rig = build_rig(tmp_path, [broken, '[{"name": "lookup", "arguments": {"q": '])
    thread_id, assistant_id = rig.thread("What is x?"), rig.assistant(tools=[LOOKUP])
    run = rig.create_run(thread_id, assistant_id)
    recorder = Recorder(rig.bus, run.id)
    rig.executor.execute(run.id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "completed", done.last_error
    assert _texts(rig, thread_id, run.id) == ["Sure."]
    assert not any(marker in _streamed(recorder) for marker in MARKUP)


def test_an_unfinished_call_with_no_text_fails_the_run_clearly(tmp_path):
    rig = build_rig(tmp_path, ["<tool_call>", '[{"name": "lookup", "arguments": {"q": '])
    thread_id, assistant_id = rig.thread("What is x?"), rig.assistant(tools=[LOOKUP])
    run = rig.create_run(thread_id, assistant_id)
    rig.executor.execute(run.id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, run.id)
    assert done.status == "failed" and "tool call" in done.last_error["message"]
    assert _texts(rig, thread_id, run.id) == []


def test_with_tool_choice_none_a_call_s_json_ends_the_reply(tmp_path):
    rig = build_rig(tmp_path, ['Paris. [{"name": "lookup", "arguments": {}}]'])
    thread_id, assistant_id = rig.thread(), rig.assistant(tools=[LOOKUP])
    run = rig.create_run(thread_id, assistant_id, tool_choice="none")
    rig.executor.execute(run.id, threading.Event())
    assert _texts(rig, thread_id, run.id) == ["Paris."]
    assert '[{"name": "lookup"' in rig.backend.stops[0] and "<tool_call>" in rig.backend.stops[0]


def test_json_that_calls_no_tool_of_the_run_is_an_answer(tmp_path):
    answer = '{"name": "Ada", "born": 1815}'
    rig = build_rig(tmp_path, [answer, answer])
    thread_id = rig.thread("Give me JSON about Ada Lovelace.")
    plain = rig.create_run(thread_id, rig.assistant())
    rig.executor.execute(plain.id, threading.Event())
    assert _texts(rig, thread_id, plain.id) == [answer]
    with_tools = rig.create_run(thread_id, rig.assistant(tools=[LOOKUP]))
    rig.executor.execute(with_tools.id, threading.Event())
    done = rig.runs.get(PROJECT, thread_id, with_tools.id)
    assert done.status == "completed" and _texts(rig, thread_id, with_tools.id) == [answer]


def test_a_call_written_without_its_tags_is_still_a_call(tmp_path):
    bare = 'Let me see. [{"name": "lookup", "arguments": {"q": "x"}}]'
    rig = build_rig(tmp_path, [bare, CALL])
    thread_id, assistant_id = rig.thread("What is x?"), rig.assistant(tools=[LOOKUP])
    run = rig.create_run(thread_id, assistant_id)
    recorder = Recorder(rig.bus, run.id)
    rig.executor.execute(run.id, threading.Event())
    parked = rig.runs.get(PROJECT, thread_id, run.id)
    assert parked.status == "requires_action", parked.last_error
    assert _texts(rig, thread_id, run.id) == ["Let me see."]
    assert not any(marker in _streamed(recorder) for marker in MARKUP)
    # the call is finished in the format's own syntax, after the text the model wrote before it
    assert rig.backend.prompts[-1].endswith("Let me see. <tool_call>")


def test_a_stray_closing_tag_ends_the_reply(tmp_path):
    rig = build_rig(tmp_path, ["It is 42.</tool_call> and more"])
    thread_id, assistant_id = rig.thread("What is x?"), rig.assistant(tools=[LOOKUP])
    run = rig.create_run(thread_id, assistant_id)
    rig.executor.execute(run.id, threading.Event())
    assert _texts(rig, thread_id, run.id) == ["It is 42."]


def test_code_and_calls_are_generated_without_the_repetition_penalty(tmp_path):
    """Prose and JSON answers keep the model's repetition penalty; output that must copy from the prompt
    (a call's arguments, code) gets none: llama.cpp's server counts the prompt's tokens in the penalty."""
    rig = build_rig(tmp_path, ["Let me check. <tool_call>" + CALL, CALL, '{"a": 1}', "Plain words."])
    assistant_id = rig.assistant(tools=[LOOKUP])
    prose = rig.backend.penalties
    run = rig.create_run(rig.thread("What is x?"), assistant_id)
    rig.executor.execute(run.id, threading.Event())
    json_run = rig.create_run(rig.thread("JSON?"), rig.assistant(response_format={"type": "json_object"}))
    rig.executor.execute(json_run.id, threading.Event())
    text_run = rig.create_run(rig.thread("Hi?"), rig.assistant())
    rig.executor.execute(text_run.id, threading.Event())
    assert prose == [1.1, 1.0, 1.1, 1.1]  # free reply, the call finished under the grammar, JSON, prose


def test_the_deltas_add_up_to_the_final_text_when_the_reply_ends_in_whitespace(tmp_path):
    """Whitespace the reply ends with is not in its message (nor, before tool markup, the markup): it is held
    back while streaming, so that the deltas add up to the final text. Whitespace within it streams."""
    reply = "First line.\n\nSecond  line. \n "
    rig = build_rig(tmp_path)
    thread_id = rig.thread("Two lines?")
    for tools in ([], [LOOKUP]):  # without tools, and with (the reply may call one)
        run = rig.create_run(thread_id, rig.assistant(tools=tools))
        recorder = Recorder(rig.bus, run.id)
        rig.backend.replies.append(reply)
        rig.executor.execute(run.id, threading.Event())
        assert rig.runs.get(PROJECT, thread_id, run.id).status == "completed"
        assert _texts(rig, thread_id, run.id) == ["First line.\n\nSecond  line."]
        assert _streamed(recorder) == "First line.\n\nSecond  line."
        recorder.close()
