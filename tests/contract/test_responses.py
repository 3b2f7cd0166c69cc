"""The Responses API with the official SDK against the real server (SmolLM2-135M): create with strings and
item lists, sync and async; streams (the SDK's helper, `stream=True`, raw SSE) against the hosted API's event
sequence and shapes; structured output; function tools across requests and as the Agents SDK replays them.
Every object, item and event is also read by the Open Responses specification's models
(tests/contract/responses_support.py). Replies are kept short: the model is slow on two cores."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response
from pydantic import BaseModel

from tests.contract.responses_support import (
    MODEL,
    check_item,
    check_response,
    check_stream,
    sse,
)
from tests.support import raw_json

pytestmark = [pytest.mark.contract, pytest.mark.model]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
LONG = "Write a long story about a dragon who lives in a castle by the sea."
HI = {"input": "Hi!", "temperature": 0, "max_output_tokens": 32}  # completes: "Hello! How can I assist..."


def create(client, **params) -> tuple[Response, dict]:
    """responses.create, its JSON checked (SDK keys and values, spec); the parsed response and its JSON."""
    params.setdefault("model", MODEL)
    params.setdefault("max_output_tokens", 16)
    raw = client.responses.with_raw_response.create(**params)
    body = raw_json(raw)
    check_response(body)
    return raw.parse(), body


def test_create_with_a_string_echoes_the_request(client):
    response, body = create(
        client,
        input="Say hello.",
        instructions="You are terse.",
        metadata={"suite": "responses", "n": "1"},
        temperature=0.3,
        top_p=0.9,
        max_output_tokens=20,
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.instructions == "You are terse."
    assert response.metadata == {"suite": "responses", "n": "1"}
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.3, 0.9, 20)
    assert response.model == MODEL and response.tools == [] and response.tool_choice == "auto"
    assert body["store"] is True and body["background"] is False and body["previous_response_id"] is None
    assert body["text"]["format"] == {"type": "text"} and body["truncation"] == "disabled"
    assert body["error"] is None and body["conversation"] is None
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert response.output_text == message.content[0].text and response.output_text.strip()
    usage = response.usage
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= 20
    assert usage.input_tokens_details.cached_tokens >= 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    if response.status == "completed":
        assert response.completed_at >= response.created_at


def test_create_with_item_lists(client):
    items = [
        {"role": "developer", "content": "Answer in one short sentence."},
        {"role": "system", "content": [{"type": "input_text", "text": "You are kind."}]},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "What is my name?"}],
        },
    ]
    response, _ = create(client, input=items)
    assert response.status in ("completed", "incomplete") and response.output_text
    listed = client.responses.input_items.with_raw_response.list(response.id, order="asc")
    body = raw_json(listed)
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
    for item in body["data"]:
        check_item(item)
    roles = [(i["type"], i["role"]) for i in body["data"]]
    assert roles == [("message", r) for r in ("developer", "system", "user", "assistant", "user")]
    assert body["data"][0]["content"] == [{"type": "input_text", "text": "Answer in one short sentence."}]
    assert body["data"][3]["content"][0]["type"] == "output_text"
    assert all(i["id"].startswith("msg_") for i in body["data"])
    assert (body["first_id"], body["last_id"]) == (body["data"][0]["id"], body["data"][-1]["id"])


async def test_async_create_and_retrieve(aclient):
    response = await aclient.responses.create(model=MODEL, input="Say hi.", max_output_tokens=16)
    assert response.status in ("completed", "incomplete") and response.output_text
    again = await aclient.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()
    events = []
    async with aclient.responses.stream(model=MODEL, **HI) as stream:
        async for event in stream:
            events.append(event.type)
        final = await stream.get_final_response()
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert final.output_text


def test_max_output_tokens_ends_incomplete(client, server):
    response, body = create(client, input=LONG, max_output_tokens=16)
    assert response.status == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response.output[0].status == "incomplete" and response.usage.output_tokens == 16
    assert body["completed_at"] is None
    events = sse(
        server.base_url,
        "POST",
        "/v1/responses",
        {"model": MODEL, "input": LONG, "max_output_tokens": 16, "stream": True},
    )
    final = check_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}


def test_prompt_past_the_context_fails_the_response(server):
    """truncation disabled (the default): a prompt the context cannot hold fails the response, its stream
    ending with response.failed and an error the SDK knows (code invalid_prompt)."""
    body = {"model": MODEL, "input": "word " * 9000, "max_output_tokens": 16, "stream": True}
    events = sse(server.base_url, "POST", "/v1/responses", body)
    final = check_stream(events)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    assert final["status"] == "failed" and final["output"] == []
    assert final["error"]["code"] == "invalid_prompt" and "truncation" in final["error"]["message"]


# ---------------------------------------------------------------------------------------------- streams
def test_raw_stream_conformance(client, server):
    body = {"model": MODEL, "input": "Tell me about cats.", "max_output_tokens": 24, "stream": True}
    events = sse(server.base_url, "POST", "/v1/responses", body)
    final = check_stream(events)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert "response.output_text.delta" in kinds
    assert events[0]["response"]["output"] == [] and events[0]["response"]["usage"] is None
    assert events[1]["response"]["status"] == "in_progress"
    retrieved = client.responses.with_raw_response.retrieve(final["id"])
    assert raw_json(retrieved) == final  # the final response equals a later retrieve, key for key
    assert final["usage"]["input_tokens_details"]["cached_tokens"] >= 0
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


def test_sdk_stream_helper(client):
    seen = []
    with client.responses.stream(model=MODEL, **HI) as stream:
        for event in stream:
            seen.append(event)
        final = stream.get_final_response()
    numbers = [e.sequence_number for e in seen]
    assert numbers == list(range(len(seen)))
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert text == final.output_text and text
    again = client.responses.retrieve(final.id)
    assert again.output_text == final.output_text and again.output[0].id == final.output[0].id
    assert again.model_dump(exclude={"output"}) == final.model_dump(exclude={"output"})


def test_create_stream_true(client):
    stream = client.responses.create(model=MODEL, input="Say yes.", max_output_tokens=16, stream=True)
    events = [e.model_dump(mode="json", exclude_unset=True, by_alias=True) for e in stream]
    final = check_stream(events)
    assert final["output"][0]["content"][0]["text"]


# ---------------------------------------------------------------------------------------- structured output
class City(BaseModel):
    name: str
    population: int


def test_parse_with_a_pydantic_model(client):
    response = client.responses.parse(
        model=MODEL,
        input="Give a city and its population as JSON.",
        text_format=City,
        max_output_tokens=60,
        temperature=0,  # a sampled string may run past the cap (cut JSON), which is not what this checks
    )
    assert response.status == "completed", response.incomplete_details
    parsed = response.output_parsed
    assert isinstance(parsed, City) and parsed.name
    body = client.responses.with_raw_response.retrieve(response.id)
    fmt = raw_json(body)["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "City" and fmt["strict"] is True
    assert fmt["schema"]["required"] == ["name", "population"]
    check_response(raw_json(body))


def test_text_format_json_schema_strict_and_json_object(client):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "name": "verdict", "schema": schema, "strict": True}
    # greedy: a sampled answer string may run past the cap (incomplete), which is not what this checks
    response, body = create(
        client,
        input="Is the sky blue? Answer in JSON.",
        text={"format": fmt},
        temperature=0,
        max_output_tokens=80,
    )
    assert response.status == "completed", body
    value = json.loads(response.output_text)
    assert set(value) == {"answer", "sure"} and isinstance(value["sure"], bool)
    assert body["text"]["format"] == {**fmt, "description": None}

    response, body = create(
        client, input="Give a JSON object with a key 'a'.", text={"format": {"type": "json_object"}}
    )
    if response.status == "completed":
        assert isinstance(json.loads(response.output_text), dict)
    else:
        assert response.output_text.lstrip().startswith("{")
    assert body["text"]["format"] == {"type": "json_object"}


# ------------------------------------------------------------------------------------------ function tools
def test_function_call_round_trip_with_previous_response_id(client):
    first, body = create(
        client,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=60,
    )
    assert first.status == "completed", body
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.id.startswith("fc_") and call.call_id
    assert isinstance(json.loads(call.arguments), dict)
    assert body["tools"] == [{**WEATHER, "strict": None}]
    assert body["tool_choice"] == "required"

    second, body = create(
        client,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 22 C"}],
        tools=[WEATHER],
        temperature=0,  # greedy: a sampled reply may call the tool again, which is not what this checks
        max_output_tokens=24,
    )
    assert second.status in ("completed", "incomplete") and second.previous_response_id == first.id
    assert second.output[-1].type == "message" and second.output_text
    assert second.usage.input_tokens > first.usage.input_tokens
    [output] = client.responses.input_items.list(second.id).data
    assert output.type == "function_call_output" and output.call_id == call.call_id


def test_named_function_streams_its_arguments(server):
    body = {
        "model": MODEL,
        "input": "Weather in Rome?",
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 60,
        "stream": True,
    }
    events = sse(server.base_url, "POST", "/v1/responses", body)
    final = check_stream(events)
    assert final["status"] == "completed", final
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = final["output"][-1]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert json.loads(call["arguments"])
    assert final["tool_choice"] == {"type": "function", "name": "get_weather"}


def test_allowed_tools_and_none(client):
    clock = {
        "type": "function",
        "name": "get_time",
        "description": "The time in a city",
        "parameters": WEATHER["parameters"],
    }
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_time"}],
    }
    response, body = create(
        client,
        input="What is the weather in Oslo?",
        tools=[WEATHER, clock],
        tool_choice=choice,
        max_output_tokens=60,
    )
    assert {i.name for i in response.output if i.type == "function_call"} == {"get_time"}
    assert body["tool_choice"] == choice
    response, _ = create(client, input="Weather in Oslo?", tools=[WEATHER], tool_choice="none")
    assert [i.type for i in response.output] == ["message"]


def test_agents_sdk_replays_the_whole_history(client):
    """What the OpenAI Agents SDK sends: no previous_response_id; the history as items (the outputs as the
    API gave them, ids and all), `include: []`, the tools, and each turn's new items appended."""
    history: list[dict] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    first, _ = create(
        client,
        input=history,
        include=[],
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=60,
        store=True,
    )
    assert first.status == "completed"
    history += [item.model_dump(mode="json", exclude_unset=True) for item in first.output]
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls  # the model may call more than once (parallel calls): the SDK answers each
    history += [{"type": "function_call_output", "call_id": c.call_id, "output": "Snow, -3 C"} for c in calls]
    # greedy: under `auto` a sampled reply may call the tool again (no text), which is not what this checks
    second, _ = create(
        client, input=history, include=[], tools=[WEATHER], max_output_tokens=24, temperature=0
    )
    assert second.status in ("completed", "incomplete") and second.output_text
    history += [item.model_dump(mode="json", exclude_unset=True) for item in second.output]
    history.append({"role": "user", "content": "Thanks!"})
    third, _ = create(client, input=history, include=[], tools=[], max_output_tokens=16)
    assert third.status in ("completed", "incomplete") and third.output_text
    listed = client.responses.input_items.list(third.id, order="asc", limit=100).data
    assert [i.type for i in listed] == [i.get("type", "message") for i in history]
    # the ids the client sent are kept (the outputs it replays are the same items)
    assert [i.id for i, sent in zip(listed, history, strict=True) if "id" in sent] == [
        sent["id"] for sent in history if "id" in sent
    ]
    assert [i.id for i in listed[1 : 1 + len(first.output)]] == [item.id for item in first.output]
