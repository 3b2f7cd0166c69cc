"""Function calling on the real SmolLM2 model: parallel calls, requires_action, submit_tool_outputs."""

from __future__ import annotations

import json
import sqlite3
import time

import jsonschema
import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta.threads import Run
from typing_extensions import override

from tests.contract.helpers import MODEL, api_error, assert_ended, shaped
from tests.support import KEY_A, ServerProcess

pytestmark = pytest.mark.model

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "the city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
TIME = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}, "hour24": {"type": "boolean"}},
    "required": ["timezone"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "Current time in a timezone", "parameters": TIME},
    },
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
QUESTION = "What is the weather in Paris and what time is it in Tokyo?"


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(
        model=MODEL, instructions="You use the tools to answer.", tools=TOOLS
    )


def parked(client, assistant, **fields) -> Run:
    """A run waiting for both functions' outputs. Greedy: once the outputs are in, a sampled reply may call a
    function again with other arguments (the run then waits again), which is not what these tests check."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    fields.setdefault("temperature", 0)
    return client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice="required", poll_interval_ms=100, **fields
    )


def outputs_for(run: Run) -> list[dict]:
    return [
        {"tool_call_id": call.id, "output": json.dumps({"ok": call.function.name})}
        for call in run.required_action.submit_tool_outputs.tool_calls
    ]


def test_two_functions_called_in_one_request_then_answer(client, assistant):
    run = parked(client, assistant)
    assert run.status == "requires_action", run.last_error
    run = shaped(client.beta.threads.runs.with_raw_response.retrieve(run.id, thread_id=run.thread_id), Run)
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert run.required_action.type == "submit_tool_outputs"
    assert sorted(c.function.name for c in calls) == ["get_time", "get_weather"]
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    assert run.usage is None and run.expires_at is not None
    step = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id).data[0]
    assert step.type == "tool_calls" and step.status == "in_progress" and step.usage is None
    assert [c.function.output for c in step.step_details.tool_calls] == [None, None]
    queued = client.beta.threads.runs.submit_tool_outputs(
        run.id, thread_id=run.thread_id, tool_outputs=outputs_for(run)
    )
    assert queued.status == "queued" and queued.required_action is None
    done = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=100)
    assert done.status == "completed", done.last_error
    assert done.usage.total_tokens > 0
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc").data
    assert [(s.type, s.status) for s in steps] == [
        ("tool_calls", "completed"),
        ("message_creation", "completed"),
    ]
    assert all(c.function.output for c in steps[0].step_details.tool_calls)
    assert steps[0].usage.completion_tokens > 0
    assert done.usage.total_tokens == sum(s.usage.total_tokens for s in steps)
    messages = client.beta.threads.messages.list(run.thread_id, order="asc").data
    assert [m.role for m in messages] == ["user", "assistant"]  # the history keeps the final answer only


def test_named_function_choice_and_single_call(client, assistant):
    run = parked(client, assistant)
    client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        poll_interval_ms=100,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in calls] == ["get_time"]
    jsonschema.validate(json.loads(calls[0].function.arguments), TIME)
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


def test_parallel_tool_calls_false_allows_one_call(client, assistant):
    run = parked(client, assistant, parallel_tool_calls=False)
    assert run.parallel_tool_calls is False
    assert len(run.required_action.submit_tool_outputs.tool_calls) == 1
    client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)


def test_tool_choice_none_answers_in_text(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tool_choice="none",
        max_completion_tokens=120,
        poll_interval_ms=100,
    )
    # a text answer and no call; a sampled answer may run on to its cap
    assert_ended(run)
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [s.type for s in steps] == ["message_creation"], steps


class ToolRecorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []
        self.deltas: dict[str, str] = {}
        self.done: list[str] = []
        self.text = ""
        self.events: list[str] = []

    @override
    def on_event(self, event) -> None:
        self.events.append(event.event)

    @override
    def on_tool_call_created(self, tool_call) -> None:
        self.created.append(tool_call.function.name)

    @override
    def on_tool_call_delta(self, delta, snapshot) -> None:
        if delta.function and delta.function.arguments:
            self.deltas[snapshot.function.name] = snapshot.function.arguments

    @override
    def on_tool_call_done(self, tool_call) -> None:
        self.done.append(tool_call.function.name)

    @override
    def on_text_delta(self, delta, snapshot) -> None:
        self.text += delta.value


def test_streamed_function_calls_and_submit_tool_outputs_stream(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    handler = ToolRecorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tool_choice="required",
        temperature=0,  # as in parked()
        event_handler=handler,
    ) as stream:
        stream.until_done()
    run = stream.get_final_run()
    assert run.status == "requires_action"
    assert sorted(handler.created) == ["get_time", "get_weather"]
    assert sorted(handler.done) == ["get_time", "get_weather"]
    for name, arguments in handler.deltas.items():
        jsonschema.validate(json.loads(arguments), SCHEMAS[name])
    assert handler.events[-1] == "thread.run.requires_action"
    assert "thread.run.step.delta" in handler.events
    after = ToolRecorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id, thread_id=thread.id, tool_outputs=outputs_for(run), event_handler=after
    ) as stream:
        stream.until_done()
    assert after.events[:3] == ["thread.run.step.completed", "thread.run.queued", "thread.run.in_progress"]
    assert after.events[-1] == "thread.run.completed"
    assert after.text.strip()


def test_submit_tool_outputs_and_poll(client, assistant):
    run = parked(client, assistant)
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=run.thread_id, tool_outputs=outputs_for(run), poll_interval_ms=100
    )
    assert done.status == "completed"


def test_submit_tool_outputs_errors(client, assistant):
    run = parked(client, assistant)
    outputs = outputs_for(run)
    with api_error(openai.BadRequestError, 400, param="tool_outputs", message="missing"):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=run.thread_id, tool_outputs=outputs[:1]
        )
    with api_error(
        openai.BadRequestError, 400, param="tool_outputs[0].tool_call_id", message="no pending tool call"
    ):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": "call_unknown", "output": "x"}]
        )
    with api_error(openai.BadRequestError, 400, param="tool_outputs[0].tool_call_id"):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=run.thread_id, tool_outputs=[{"output": "x"}]
        )
    client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=run.thread_id, tool_outputs=outputs, poll_interval_ms=100
    )
    with api_error(openai.BadRequestError, 400, param="run_id", message="do not accept tool outputs"):
        client.beta.threads.runs.submit_tool_outputs(run.id, thread_id=run.thread_id, tool_outputs=outputs)


def test_unsupported_schema_is_refused_at_assistant_creation(client):
    bad = {"type": "object", "properties": {"x": {"$ref": "http://example.com/elsewhere.json"}}}
    with api_error(openai.BadRequestError, 400, param="tools[0].function.parameters"):
        client.beta.assistants.create(
            model=MODEL, tools=[{"type": "function", "function": {"name": "f", "parameters": bad}}]
        )


def test_requires_action_expires(tmp_path_factory):
    data = tmp_path_factory.mktemp("expiry")
    server = ServerProcess(data, args=["--load-models-at-start"])
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)
        assistant = client.beta.assistants.create(model=MODEL, tools=TOOLS)
        run = parked(client, assistant)
        assert run.status == "requires_action"
        # Its time runs out now, however long it took to get here on a busy machine (the database's clock).
        with sqlite3.connect(data / "assistd.db") as db:
            db.execute("UPDATE runs SET expires_at = ? WHERE id = ?", (int(time.time()) + 1, run.id))
        deadline = time.monotonic() + 60
        while run.status == "requires_action" and time.monotonic() < deadline:
            time.sleep(0.2)
            run = client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
        assert run.status == "expired" and run.expires_at is None and run.required_action is None
        step = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id).data[0]
        assert step.status == "expired" and step.expired_at
        with api_error(openai.BadRequestError, 400, param="run_id"):
            client.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
            )
    finally:
        server.stop()
