"""Issue 10 §2 and §3 on the real model, through a real server and the official SDK: tool-call syntax never
reaches message text, every run ends in a terminal state with a useful message or a clear last_error, and
the server's reply cap ends a run `incomplete`."""

from __future__ import annotations

import json

import openai
import pytest

from tests.contract.helpers import MODEL
from tests.support import KEY_A, ServerProcess

pytestmark = pytest.mark.model

RUNS = 5
QUESTION = "What's the weather in Rome?"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city"}},
            "required": ["city"],
        },
    },
}
# Tool syntax of every format the server speaks: the generic/hermes tags and the JSON of a call.
SYNTAX = ("<tool_call>", "</tool_call>", "<tool_response>", '{"name":', '{"name" :', "<|python_tag|>")
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(
        model=MODEL,
        instructions="You answer questions, using the tools when they help.",
        tools=[{"type": "code_interpreter"}, WEATHER],
    )


def _texts(client, run) -> list[str]:
    messages = client.beta.threads.messages.list(run.thread_id, run_id=run.id, order="asc").data
    return [part.text.value for m in messages for part in m.content if part.type == "text"]


def _check_ended_well(client, run) -> None:
    """Terminal; no tool syntax in any message; a useful message or a clear last_error."""
    assert run.status in TERMINAL, run.status
    texts = _texts(client, run)
    for text in texts:
        assert not any(s in text for s in SYNTAX), f"tool syntax in a message of {run.id}: {text!r}"
    if run.status == "completed":
        assert texts and texts[-1].strip(), f"{run.id} completed without text"
    elif run.status == "failed":
        assert run.last_error is not None and len(run.last_error.message) > 20, run.last_error
    else:
        assert run.status == "incomplete" and run.incomplete_details is not None
        assert texts and texts[-1].strip()


def _drive(client, run):
    """Polls the run to its end, answering get_weather whenever the model calls it (as a client does)."""
    rounds = 0
    while run.status == "requires_action":
        rounds += 1
        assert rounds <= 10, "the run kept asking for tool outputs"
        outputs = [
            {"tool_call_id": c.id, "output": json.dumps({"city": "Rome", "sky": "sunny", "celsius": 24})}
            for c in run.required_action.submit_tool_outputs.tool_calls
        ]
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=run.thread_id, tool_outputs=outputs, poll_interval_ms=100
        )
    return run, rounds


def _runs(client, assistant, tool_choice: dict) -> list:
    ended = []
    for i in range(RUNS):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id,
            assistant_id=assistant.id,
            tool_choice=tool_choice,
            temperature=0.7 if i else 0,  # one greedy run, the others sampled
            poll_interval_ms=100,
        )
        run, rounds = _drive(client, run)
        _check_ended_well(client, run)
        ended.append((run, rounds))
    print(tool_choice, [(r.status, rounds, _texts(client, r)) for r, rounds in ended])
    return ended


def test_forced_code_interpreter_never_shows_tool_syntax(client, assistant):
    for run, _rounds in _runs(client, assistant, {"type": "code_interpreter"}):
        steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id).data
        assert any(
            c.type == "code_interpreter"
            for s in steps
            if s.type == "tool_calls"
            for c in s.step_details.tool_calls
        )


def test_forced_function_never_shows_tool_syntax(client, assistant):
    for _run, rounds in _runs(client, assistant, {"type": "function", "function": {"name": "get_weather"}}):
        assert rounds >= 1  # the call was forced


def test_the_server_reply_cap_ends_a_run_incomplete(tmp_path_factory):
    capped = ServerProcess(tmp_path_factory.mktemp("capped"), args=["--max-reply-tokens", "8"])
    try:
        c = openai.OpenAI(base_url=f"{capped.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
        assistant = c.beta.assistants.create(model=MODEL, instructions="Write at great length.")
        thread = c.beta.threads.create(
            messages=[{"role": "user", "content": "Tell a very long story about a dragon."}]
        )
        run = c.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100
        )
        assert run.status == "incomplete", run.last_error
        assert run.incomplete_details.reason == "max_completion_tokens"
        assert run.completed_at is None and run.usage.completion_tokens <= 8
        message = c.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
        assert message.status == "incomplete" and message.incomplete_details.reason == "max_tokens"
        assert message.content[0].text.value.strip()
    finally:
        capped.stop()
