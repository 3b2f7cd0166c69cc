"""Responses on the engine, beyond their shapes: truncation (`disabled` by default, as hosted: a conversation
past the model's context fails the response with `invalid_prompt`, nothing silently left out; `auto` drops
the oldest part and answers), and a background response cancelled while it generates."""

from __future__ import annotations

import time

import openai
import pytest

from tests.contract.helpers import MODEL, api_error

pytestmark = pytest.mark.model

# far more than the bundled model's context
LONG = " ".join(f"Line {i}: the harbour of town {i % 41} keeps its boats in a row." for i in range(1500))


def test_a_conversation_past_the_context_fails_unless_truncation_is_auto(client):
    refused = client.responses.create(model=MODEL, input=LONG + "\nSay hi.", max_output_tokens=16)
    assert refused.status == "failed"
    assert refused.error.code == "invalid_prompt" and "truncation is disabled" in refused.error.message
    assert refused.output == []
    fitted = client.responses.create(
        model=MODEL, input=LONG + "\nSay hi.", truncation="auto", max_output_tokens=16
    )
    assert fitted.status in ("completed", "incomplete"), fitted.error
    assert fitted.truncation == "auto" and fitted.output_text.strip()


def test_a_background_response_cancelled_while_it_generates(client):
    response = client.responses.create(
        model=MODEL,
        input="Write a very long story about the history of the sea, with many chapters.",
        background=True,
        temperature=1.0,
        max_output_tokens=800,
    )
    deadline = time.monotonic() + 120
    while client.responses.retrieve(response.id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    cancelled = client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    time.sleep(1.0)  # the worker stops at its next write; it changes nothing after the cancel
    later = client.responses.retrieve(response.id)
    assert later.status == "cancelled" and later.usage == cancelled.usage
    assert [i.model_dump() for i in later.output] == [i.model_dump() for i in cancelled.output]
    # the engine's slot is free again: a new response completes
    again = client.responses.create(model=MODEL, input="Say hi.", max_output_tokens=16)
    assert again.status in ("completed", "incomplete"), again.error


def test_a_required_call_cut_by_max_output_tokens_is_incomplete_not_failed(client):
    """Greedy, the 135M model repeats the call the grammar allows until the cap: the reply never closes."""
    tool = {
        "type": "function",
        "name": "transfer_to_billing_agent",
        "parameters": {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
        "strict": True,
    }
    response = client.responses.create(
        model=MODEL,
        instructions="Hand billing questions to the billing agent.",
        input=[{"role": "user", "content": "Why was I charged twice this month?"}],
        tools=[tool],
        tool_choice="required",
        temperature=0,
        max_output_tokens=64,
    )
    assert response.status == "incomplete", response.error
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 64


def test_schemas_the_grammar_cannot_honour_and_unknown_files_are_400s_at_create(client):
    remote = {"$ref": "https://example.com/schema.json"}
    with api_error(openai.BadRequestError, 400, param="text.format.schema"):
        client.responses.create(
            model=MODEL, input="hi", text={"format": {"type": "json_schema", "name": "x", "schema": remote}}
        )
    tools = [
        {"type": "function", "name": "ok", "parameters": {"type": "object"}},
        {"type": "function", "name": "bad", "parameters": remote},
    ]
    with api_error(openai.BadRequestError, 400, param="tools[1].parameters"):
        client.responses.create(model=MODEL, input="hi", tools=tools)
    content = [{"type": "input_text", "text": "Read it."}, {"type": "input_file", "file_id": "file-nope"}]
    with api_error(openai.NotFoundError, 404, param="input[0].content[1].file_id"):
        client.responses.create(model=MODEL, input=[{"role": "user", "content": content}])
    with api_error(openai.BadRequestError, 400, param="input"):
        client.responses.input_tokens.count(model=MODEL, input=LONG)


def test_a_response_whose_conversation_is_deleted_still_ends(client):
    conversation = client.conversations.create()
    response = client.responses.create(
        model=MODEL, input=LONG[:4000], conversation=conversation.id, background=True, max_output_tokens=64
    )
    client.conversations.delete(conversation.id)
    deadline = time.monotonic() + 120
    while (status := client.responses.retrieve(response.id).status) in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "the response is stuck"
        time.sleep(0.1)
    assert status in ("completed", "incomplete", "failed")
    again = client.responses.create(model=MODEL, input="Say hi.", max_output_tokens=16)  # the engine goes on
    assert again.status in ("completed", "incomplete"), again.error


def test_a_conversation_item_reference_finds_a_response_item(client):
    response = client.responses.create(model=MODEL, input="Say hi.", max_output_tokens=16)
    conversation = client.conversations.create(
        items=[{"type": "item_reference", "id": response.output[0].id}]
    )
    items = client.conversations.items.list(conversation.id).data
    assert [i.id for i in items] == [response.output[0].id]
