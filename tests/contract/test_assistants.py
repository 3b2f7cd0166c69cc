"""Assistants: create/list/retrieve/update/delete with every field, sync and async, shapes checked."""

from __future__ import annotations

import openai
from openai.types.beta import Assistant, AssistantDeleted

from tests.contract.helpers import MODEL, api_error, shaped, shaped_list, upload

FUNCTION = {
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TOOLS = [
    {"type": "code_interpreter"},
    {
        "type": "file_search",
        "file_search": {"max_num_results": 7, "ranking_options": {"score_threshold": 0.4}},
    },
    {"type": "function", "function": FUNCTION},
]
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "description": "an answer",
        "schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "strict": True,
    },
}


def test_create_with_every_field(client):
    file = upload(client)
    assistant = shaped(
        client.beta.assistants.with_raw_response.create(
            model=MODEL,
            name="Helper",
            description="helps",
            instructions="Be brief.",
            tools=TOOLS,
            tool_resources={"code_interpreter": {"file_ids": [file.id]}},
            metadata={"team": "a", "n": "1"},
            temperature=0.3,
            top_p=0.8,
            response_format=JSON_SCHEMA,
        ),
        Assistant,
    )
    assert assistant.id.startswith("asst_") and assistant.object == "assistant"
    assert (assistant.name, assistant.description, assistant.instructions) == ("Helper", "helps", "Be brief.")
    assert assistant.model == MODEL
    assert [tool.type for tool in assistant.tools] == ["code_interpreter", "file_search", "function"]
    fs = assistant.tools[1].file_search
    assert fs.max_num_results == 7 and fs.ranking_options.score_threshold == 0.4
    assert fs.ranking_options.ranker in ("auto", "default_2024_08_21")
    fn = assistant.tools[2].function
    assert (fn.name, fn.description, fn.parameters) == (
        "get_weather",
        "Weather of a city",
        FUNCTION["parameters"],
    )
    assert assistant.tool_resources.code_interpreter.file_ids == [file.id]
    assert assistant.metadata == {"team": "a", "n": "1"}
    assert (assistant.temperature, assistant.top_p) == (0.3, 0.8)
    assert assistant.response_format.type == "json_schema"
    assert assistant.response_format.json_schema.name == "answer"
    assert assistant.response_format.json_schema.schema_ == JSON_SCHEMA["json_schema"]["schema"]
    assert assistant.response_format.json_schema.strict is True

    again = shaped(client.beta.assistants.with_raw_response.retrieve(assistant.id), Assistant)
    assert again == assistant


def test_create_minimal_has_nullable_fields(client):
    assistant = shaped(client.beta.assistants.with_raw_response.create(model=MODEL), Assistant)
    assert assistant.name is None and assistant.description is None and assistant.instructions is None
    assert assistant.tools == [] and assistant.metadata == {}
    assert assistant.temperature is None and assistant.top_p is None
    assert assistant.response_format in ("auto", None)


def test_response_formats(client):
    for fmt in ("auto", {"type": "text"}, {"type": "json_object"}, JSON_SCHEMA):
        assistant = shaped(
            client.beta.assistants.with_raw_response.create(model=MODEL, response_format=fmt), Assistant
        )
        if fmt == "auto":
            assert assistant.response_format == "auto"
        else:
            assert assistant.response_format.type == fmt["type"]


def test_update_is_partial_and_null_clears(client):
    file = upload(client)
    created = client.beta.assistants.create(
        model=MODEL,
        name="before",
        description="desc",
        instructions="inst",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [file.id]}},
        metadata={"k": "v"},
        temperature=0.5,
        top_p=0.5,
        response_format={"type": "json_object"},
    )
    updated = shaped(client.beta.assistants.with_raw_response.update(created.id, name="after"), Assistant)
    assert updated.name == "after"
    assert (updated.description, updated.instructions, updated.temperature) == ("desc", "inst", 0.5)
    assert updated.metadata == {"k": "v"} and [t.type for t in updated.tools] == ["code_interpreter"]
    assert updated.tool_resources.code_interpreter.file_ids == [file.id]
    assert updated.response_format.type == "json_object"
    assert updated.created_at == created.created_at and updated.model == MODEL

    cleared = shaped(
        client.beta.assistants.with_raw_response.update(
            created.id, description=None, temperature=None, metadata={"other": "x"}, tools=[FUNCTION_TOOL]
        ),
        Assistant,
    )
    assert cleared.description is None and cleared.temperature is None
    assert cleared.instructions == "inst" and cleared.top_p == 0.5
    assert cleared.metadata == {"other": "x"}
    assert [t.type for t in cleared.tools] == ["function"]

    resources = client.beta.assistants.update(
        created.id, tool_resources={"code_interpreter": {"file_ids": []}}
    )
    assert resources.tool_resources.code_interpreter.file_ids == []
    assert client.beta.assistants.retrieve(created.id) == resources


FUNCTION_TOOL = {
    "type": "function",
    "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}},
}


def test_list_retrieve_delete(client):
    made = [client.beta.assistants.create(model=MODEL, name=f"list-{i}") for i in range(3)]
    page = shaped_list(client.beta.assistants.with_raw_response.list(limit=3), Assistant)
    assert [a.id for a in page.data] == [a.id for a in reversed(made)]
    asc = shaped_list(
        client.beta.assistants.with_raw_response.list(limit=2, order="asc", after=made[0].id), Assistant
    )
    assert [a.id for a in asc.data] == [made[1].id, made[2].id]
    before = shaped_list(
        client.beta.assistants.with_raw_response.list(before=made[0].id, order="asc"), Assistant
    )
    assert made[0].id not in [a.id for a in before.data]

    deleted = shaped(client.beta.assistants.with_raw_response.delete(made[1].id), AssistantDeleted)
    assert (deleted.id, deleted.object, deleted.deleted) == (made[1].id, "assistant.deleted", True)
    with api_error(openai.NotFoundError, 404, message=f"No assistant found with id '{made[1].id}'."):
        client.beta.assistants.retrieve(made[1].id)
    with api_error(openai.NotFoundError, 404, message=f"No assistant found with id '{made[1].id}'."):
        client.beta.assistants.delete(made[1].id)
    with api_error(openai.NotFoundError, 404):
        client.beta.assistants.update(made[1].id, name="ghost")
    assert made[1].id not in [a.id for a in client.beta.assistants.list(limit=100)]


def test_unknown_model_and_file_are_400(client):
    with api_error(openai.BadRequestError, 400, param="model"):
        client.beta.assistants.create(model="no-such-model")
    with api_error(openai.BadRequestError, 400, param="tool_resources.code_interpreter.file_ids[0]"):
        client.beta.assistants.create(
            model=MODEL, tool_resources={"code_interpreter": {"file_ids": ["file-nope"]}}
        )


async def test_async_lifecycle(aclient):
    raw = await aclient.beta.assistants.with_raw_response.create(model=MODEL, name="async", tools=TOOLS)
    assistant = shaped(raw, Assistant)
    fetched = shaped(await aclient.beta.assistants.with_raw_response.retrieve(assistant.id), Assistant)
    assert fetched == assistant
    updated = shaped(
        await aclient.beta.assistants.with_raw_response.update(assistant.id, metadata={"a": "b"}), Assistant
    )
    assert updated.metadata == {"a": "b"} and updated.name == "async"
    shaped_list(await aclient.beta.assistants.with_raw_response.list(limit=5), Assistant)
    seen = [a.id async for a in aclient.beta.assistants.list(limit=2)]
    assert assistant.id in seen and len(seen) == len(set(seen))
    deleted = shaped(await aclient.beta.assistants.with_raw_response.delete(assistant.id), AssistantDeleted)
    assert deleted.deleted
    with api_error(openai.NotFoundError, 404):
        await aclient.beta.assistants.retrieve(assistant.id)
