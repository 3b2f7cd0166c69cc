"""Runs on the real SmolLM2 model through the official SDK: polling, streaming, cancel, limits, errors."""

from __future__ import annotations

import json
import time

import httpx
import jsonschema
import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta import Thread
from openai.types.beta.threads import Message, MessageDeltaEvent, Run
from openai.types.beta.threads.runs import RunStep, RunStepDeltaEvent
from typing_extensions import override

from tests.contract.helpers import MODEL, api_error, assert_ended, shaped, shaped_list
from tests.support import KEY_A, assert_shape

pytestmark = pytest.mark.model

TEXT_EVENTS = [
    "thread.run.created",
    "thread.run.queued",
    "thread.run.in_progress",
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
]
TEXT_TAIL = ["thread.message.completed", "thread.run.step.completed", "thread.run.completed"]


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(
        model=MODEL, name="runner", instructions="You are a helpful assistant. Answer in one short sentence."
    )


def ask(client, text: str):
    return client.beta.threads.create(messages=[{"role": "user", "content": text}])


def test_create_and_poll_answers_and_records_steps_and_usage(client, assistant):
    thread = ask(client, "What is the capital of France?")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100
    )
    assert run.status == "completed", run.last_error
    run = shaped(client.beta.threads.runs.with_raw_response.retrieve(run.id, thread_id=thread.id), Run)
    assert run.usage.prompt_tokens > 10 and run.usage.completion_tokens > 0
    assert run.usage.total_tokens == run.usage.prompt_tokens + run.usage.completion_tokens
    assert run.started_at and run.completed_at and run.expires_at is None and run.model == MODEL
    assert run.instructions == assistant.instructions and run.tool_choice == "auto"
    assert run.truncation_strategy.type == "auto" and run.parallel_tool_calls is True
    steps = shaped_list(
        client.beta.threads.runs.steps.with_raw_response.list(run.id, thread_id=thread.id), RunStep
    )
    assert [(s.type, s.status) for s in steps.data] == [("message_creation", "completed")]
    step = shaped(
        client.beta.threads.runs.steps.with_raw_response.retrieve(
            steps.data[0].id, thread_id=thread.id, run_id=run.id
        ),
        RunStep,
    )
    assert step.usage.total_tokens == run.usage.total_tokens
    replies = shaped_list(
        client.beta.threads.messages.with_raw_response.list(thread.id, run_id=run.id), Message
    )
    assert len(replies.data) == 1
    reply = replies.data[0]
    assert reply.id == step.step_details.message_creation.message_id
    assert reply.role == "assistant" and reply.status == "completed" and reply.run_id == run.id
    assert reply.assistant_id == assistant.id and reply.content[0].text.value.strip()
    runs = shaped_list(client.beta.threads.runs.with_raw_response.list(thread.id), Run)
    assert [r.id for r in runs.data] == [run.id]


def test_create_and_run_poll(client, assistant):
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Say hello."}], "metadata": {"user": "u1"}},
        poll_interval_ms=100,
    )
    assert run.status == "completed", run.last_error
    assert client.beta.threads.retrieve(run.thread_id).metadata == {"user": "u1"}
    messages = client.beta.threads.messages.list(run.thread_id, order="asc").data
    assert [m.role for m in messages] == ["user", "assistant"]


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.text = ""

    @override
    def on_run_step_created(self, run_step) -> None:
        self.calls.append("run_step_created")

    @override
    def on_run_step_done(self, run_step) -> None:
        self.calls.append("run_step_done")

    @override
    def on_message_created(self, message) -> None:
        self.calls.append("message_created")

    @override
    def on_message_done(self, message) -> None:
        self.calls.append("message_done")
        self.final = message

    @override
    def on_text_created(self, text) -> None:
        self.calls.append("text_created")

    @override
    def on_text_delta(self, delta, snapshot) -> None:
        self.text += delta.value
        if not self.calls or self.calls[-1] != "text_delta":
            self.calls.append("text_delta")

    @override
    def on_text_done(self, text) -> None:
        self.calls.append("text_done")

    @override
    def on_end(self) -> None:
        self.calls.append("end")


def test_stream_with_event_handler_fires_every_callback(client, assistant):
    thread = ask(client, "Name a color.")
    handler = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
    assert handler.calls == [
        "run_step_created",
        "message_created",
        "text_created",
        "text_delta",
        "text_done",
        "message_done",
        "run_step_done",
        "end",
    ]
    final = stream.get_final_run()
    assert final.status == "completed" and final.usage.total_tokens > 0
    stored = client.beta.threads.messages.list(thread.id, run_id=final.id).data[0]
    assert (
        handler.text.strip()
        == stored.content[0].text.value.strip()
        == handler.final.content[0].text.value.strip()
    )


async def test_async_stream_and_text_deltas(aclient):
    assistant = await aclient.beta.assistants.create(model=MODEL, instructions="Answer briefly.")
    thread = await aclient.beta.threads.create(messages=[{"role": "user", "content": "Count to three."}])
    async with aclient.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        pieces = [piece async for piece in stream.text_deltas]
    run = await stream.get_final_run()
    assert run.status == "completed" and "".join(pieces).strip()


SHAPES = {
    "thread.created": Thread,
    "thread.run.step.delta": RunStepDeltaEvent,
    "thread.message.delta": MessageDeltaEvent,
}


def _shape_for(name: str):
    if name in SHAPES:
        return SHAPES[name]
    if name.startswith("thread.run.step."):
        return RunStep
    if name.startswith("thread.run."):
        return Run
    return Message


def raw_events(server, path: str, body: dict) -> list[tuple[str, object]]:
    """The SSE events of a streaming POST, read with plain httpx (no SDK) and parsed by hand."""
    events, name = [], None
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1{path}",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {KEY_A}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
                events.append((name, data if data == "[DONE]" else json.loads(data)))
    return events


def test_raw_stream_of_create_and_run_matches_the_spec(server, client, assistant):
    events = raw_events(
        server,
        "/threads/runs",
        {
            "assistant_id": assistant.id,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": "Hi!"}]},
        },
    )
    names = [name for name, _ in events]
    assert names[0] == "thread.created"
    assert names[1 : 1 + len(TEXT_EVENTS)] == TEXT_EVENTS
    body = names[1 + len(TEXT_EVENTS) : -4]
    assert body and set(body) == {"thread.message.delta"}
    assert names[-4:] == [*TEXT_TAIL, "done"]
    assert events[-1][1] == "[DONE]"
    for name, data in events[:-1]:
        assert_shape(data, _shape_for(name)) if not name.endswith("delta") else None
    created = dict(events)["thread.message.created"]
    assert created["status"] == "in_progress" and created["content"] == []
    completed = dict(events)["thread.run.completed"]
    assert completed["usage"]["total_tokens"] > 0 and completed["expires_at"] is None
    text = "".join(
        d["delta"]["content"][0]["text"]["value"] for n, d in events if n == "thread.message.delta"
    )
    assert text == dict(events)["thread.message.completed"]["content"][0]["text"]["value"]


def test_raw_sdk_stream_yields_typed_events(client, assistant):
    thread = ask(client, "Hello")
    stream = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    kinds = [event.event for event in stream]
    assert kinds[: len(TEXT_EVENTS)] == TEXT_EVENTS and kinds[-3:] == TEXT_TAIL


def test_stream_survives_a_client_that_disconnects(server, client, assistant):
    thread = ask(client, "Write a long story about a dragon.")
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/threads/{thread.id}/runs",
        timeout=60,
        json={"assistant_id": assistant.id, "stream": True, "max_completion_tokens": 200},
        headers={"Authorization": f"Bearer {KEY_A}"},
    ) as response:
        run_id = None
        for line in response.iter_lines():
            if line.startswith("data: {") and run_id is None:
                run_id = json.loads(line[6:])["id"]
            if "thread.message.delta" in line:
                break  # hang up mid-generation
    run = client.beta.threads.runs.poll(run_id, thread_id=thread.id, poll_interval_ms=100)
    assert run.status in ("completed", "incomplete")
    assert client.beta.threads.messages.list(thread.id, run_id=run_id).data[0].content[0].text.value


def test_cancel_mid_generation(client, assistant):
    thread = ask(client, "Write a very long story about the history of the sea, with many chapters.")
    run = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, instructions="Write at great length.", temperature=1.0
    )
    deadline = time.monotonic() + 60
    while (
        client.beta.threads.messages.list(thread.id, run_id=run.id).data == [] and time.monotonic() < deadline
    ):
        time.sleep(0.05)  # wait until the message is being written
    asked = time.monotonic()
    cancelling = shaped(client.beta.threads.runs.with_raw_response.cancel(run.id, thread_id=thread.id), Run)
    assert cancelling.status in ("cancelling", "cancelled")
    run = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
    took = time.monotonic() - asked
    assert run.status == "cancelled", run.status
    assert run.cancelled_at and run.expires_at is None and took < 30  # the cancel ended it (generous)
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "run_cancelled"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert steps[0].status == "cancelled"
    with api_error(openai.BadRequestError, 400, param="run_id", message="Cannot cancel run"):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


def test_max_completion_tokens_ends_incomplete(client, assistant):
    thread = ask(client, "Describe the ocean in detail.")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=4, poll_interval_ms=100
    )
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert run.usage.completion_tokens == 4
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "max_tokens"


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer"},
        "coastal": {"type": "boolean"},
    },
    "required": ["city", "population", "coastal"],
    "additionalProperties": False,
}


def test_json_schema_response_format_parses_and_validates(client, assistant):
    thread = ask(client, "Give me a city with its population.")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        poll_interval_ms=100,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}},
        temperature=0,  # greedy: a sampled name may run on to the reply's cap, which is not what this checks
    )
    assert run.status == "completed", run.last_error
    assert run.response_format.type == "json_schema"
    text = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0].text.value
    jsonschema.validate(json.loads(text), SCHEMA)


def test_json_object_response_format(client, assistant):
    thread = ask(client, "Reply with a JSON object describing a cat.")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        response_format={"type": "json_object"},
        max_completion_tokens=200,
        poll_interval_ms=100,
    )
    text = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0].text.value
    assert_ended(run)
    if run.status == "completed":
        assert isinstance(json.loads(text), dict)
    else:  # a sampled object may go on repeating its keys until the cap (a full run saw 8,778 characters)
        assert text.lstrip().startswith("{"), text


def test_active_run_conflicts(client, assistant):
    thread = ask(client, "Write a long poem about mountains.")
    run = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=300
    )
    with api_error(openai.BadRequestError, 400, param="thread_id", message="already has an active run"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    with api_error(openai.BadRequestError, 400, param="thread_id", message="while a run"):
        client.beta.threads.messages.create(thread.id, role="user", content="more")
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)


def test_unknown_model_and_bad_ids(client, assistant):
    thread = ask(client, "Hi")
    with api_error(openai.BadRequestError, 400, param="model"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, model="gpt-17")
    with api_error(openai.BadRequestError, 400, param="model"):
        client.beta.assistants.create(model="nope")
    with api_error(openai.NotFoundError, 404, message="No assistant found with id 'asst_nope'"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_nope")
    with api_error(openai.NotFoundError, 404, message="No run found with id 'run_nope'"):
        client.beta.threads.runs.retrieve("run_nope", thread_id=thread.id)
    with api_error(openai.BadRequestError, 400, param="max_prompt_tokens"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=10)
    with api_error(openai.BadRequestError, 400, param="tool_choice"):
        client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, tool_choice="required"
        )


def test_update_run_metadata_and_other_project_cannot_see_it(client, client_b, assistant):
    thread = ask(client, "Hi")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, metadata={"a": "1"}, poll_interval_ms=100
    )
    updated = shaped(
        client.beta.threads.runs.with_raw_response.update(run.id, thread_id=thread.id, metadata={"b": "2"}),
        Run,
    )
    assert updated.metadata == {"b": "2"}
    with api_error(openai.NotFoundError, 404):
        client_b.beta.threads.runs.retrieve(run.id, thread_id=thread.id)


def test_history_longer_than_the_context_is_truncated(tmp_path_factory):
    from tests.support import ServerProcess

    small = ServerProcess(tmp_path_factory.mktemp("smallctx"), args=["--n-ctx", "1024"])
    try:
        c = openai.OpenAI(base_url=f"{small.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
        assistant = c.beta.assistants.create(model=MODEL, instructions="Answer briefly.")
        filler = "The quick brown fox jumps over the lazy dog. " * 40
        messages = [{"role": "user", "content": f"Note {i}: {filler}"} for i in range(12)]
        messages.append({"role": "user", "content": "What animal jumps?"})
        thread = c.beta.threads.create(messages=messages)
        run = c.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100
        )
        # (incomplete: the reply reached what the 1024-token context left it; the prompt still fitted)
        assert run.status in ("completed", "incomplete"), run.last_error
        assert run.usage.prompt_tokens <= 1024
        c.beta.threads.messages.create(thread.id, role="user", content="And which one is lazy?")
        run = c.beta.threads.runs.create_and_poll(
            thread_id=thread.id,
            assistant_id=assistant.id,
            truncation_strategy={"type": "last_messages", "last_messages": 1},
            poll_interval_ms=100,
        )
        assert run.status in ("completed", "incomplete") and run.usage.prompt_tokens < 100
    finally:
        small.stop()


def test_restart_mid_generation_leaves_no_run_in_progress(tmp_path_factory):
    from tests.support import ServerProcess

    data = tmp_path_factory.mktemp("restart")
    lease = ["--run-lease-seconds", "4"]  # liveness is by lease alone: the next server waits it out
    first = ServerProcess(data, args=lease)
    c = openai.OpenAI(base_url=f"{first.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)
    assistant = c.beta.assistants.create(model=MODEL, instructions="Write at great length.")
    thread = c.beta.threads.create(messages=[{"role": "user", "content": "Tell a very long story."}])
    run = c.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, temperature=1.0)
    # Mid-generation: the run has its message step (a run killed before its first step is run again).
    while not c.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data:
        time.sleep(0.02)
    first.proc.kill()  # a crash: no shutdown handler runs
    first.proc.wait()
    second = ServerProcess(data, args=lease)
    try:
        c = openai.OpenAI(base_url=f"{second.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)
        deadline = time.monotonic() + 120
        after = c.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
        while after.status == "in_progress" and time.monotonic() < deadline:  # until the lease runs out
            time.sleep(0.2)
            after = c.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
        assert after.status == "failed" and after.last_error.code == "server_error"
        assert "stopped before it ended" in after.last_error.message
        for message in c.beta.threads.messages.list(thread.id).data:
            assert message.status != "in_progress"
    finally:
        second.stop()
