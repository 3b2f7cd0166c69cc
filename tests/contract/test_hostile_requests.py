"""Hostile and sloppy requests against the real server (issue 10 §5): the Usage API's limits, deep nesting,
strict types, image URLs, `%2f` in paths, `reasoning_effort`, and NUL characters. Every one is an OpenAI
error body naming the parameter (or a 404), never a 500 and never silently accepted."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from tests.contract.helpers import MODEL, api_error, check_error_body
from tests.support import KEY_A, png_data_url

BETA = {"OpenAI-Beta": "assistants=v2"}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(
        base_url=f"{server.base_url}/v1", headers={"Authorization": f"Bearer {KEY_A}", **BETA}, timeout=120
    ) as c:
        yield c


def nested(levels: int, leaf=1, key: str = "a"):
    value = leaf
    for _ in range(levels):
        value = {key: value}
    return value


def nested_schema(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def deep_body(prefix: bytes, levels: int, suffix: bytes) -> bytes:
    """A JSON text nested `levels` deep without building it in Python (json.dumps would recurse)."""
    return prefix + b'{"a":' * levels + b"1" + b"}" * levels + suffix


# ------------------------------------------------------------------------------------------- usage API


def test_usage_limits_follow_the_hosted_api(http):
    start = int(time.time()) - 3600
    url = "organization/usage/completions"
    cases = [
        ({"start_time": start, "bucket_width": "1m", "limit": 1_000_000_000}, "limit"),
        ({"start_time": start, "bucket_width": "1m", "limit": 1441}, "limit"),
        ({"start_time": start, "bucket_width": "1h", "limit": 169}, "limit"),
        ({"start_time": start, "bucket_width": "1d", "limit": 32}, "limit"),
        ({"bucket_width": "1d"}, "start_time"),
        ({"start_time": -1}, "start_time"),
        ({"start_time": "soon"}, "start_time"),
        ({"start_time": start, "end_time": start}, "end_time"),
        ({"start_time": start, "bucket_width": "1s"}, "bucket_width"),
    ]
    for params, param in cases:
        check_error_body(http.get(url, params=params), 400, param=param)
        check_error_body(
            http.get("organization/usage/code_interpreter_sessions", params=params), 400, param=param
        )
    page = http.get(url, params={"start_time": start, "bucket_width": "1m", "limit": 1440}).json()
    assert page["object"] == "page" and 60 <= len(page["data"]) <= 62 and page["has_more"] is False


def test_usage_bursts_leave_the_api_answering(server):
    """The issue's case: 40 requests for a billion one-minute buckets used to hang every /v1 route."""

    async def burst() -> tuple[list[int], int]:
        async with httpx.AsyncClient(
            base_url=f"{server.base_url}/v1", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=600
        ) as client:
            params = {"start_time": 0, "bucket_width": "1m", "limit": 1_000_000_000}
            usage = [
                asyncio.ensure_future(client.get("organization/usage/completions", params=params))
                for _ in range(40)
            ]
            await asyncio.sleep(0.5)
            listed = await asyncio.wait_for(client.get("assistants", headers=BETA), 120)
            answers = await asyncio.wait_for(asyncio.gather(*usage), 120)
        return [a.status_code for a in answers], listed.status_code

    usage, listed = asyncio.run(burst())
    assert listed == 200 and usage == [400] * 40


# ------------------------------------------------------------------------------------------ deep nesting


def test_deeply_nested_bodies_are_400_naming_the_param(http):
    json_type = {"content-type": "application/json"}
    cases = [
        (b'{"model": "' + MODEL.encode() + b'", "metadata":', 1500, b"}", "assistants", "metadata"),
        (b'{"messages": [], "metadata":', 100_000, b"}", "threads", "metadata"),
        (b'{"unknown":', 2000, b"}", "threads", "unknown"),
    ]
    for prefix, levels, suffix, path, param in cases:
        response = http.post(path, content=deep_body(prefix, levels, suffix), headers=json_type)
        check_error_body(response, 400, param=param, message="nested more than")
    deep_list = b"[" * 5000 + b"]" * 5000
    check_error_body(http.post("threads", content=deep_list, headers=json_type), 400)
    function = {"type": "function", "function": {"name": "f", "parameters": nested_schema(300)}}
    for levels in (100, 300, 2000):
        tool = {"type": "function", "function": {"name": "f", "parameters": "PARAMS"}}
        body = json.dumps({"model": MODEL, "tools": [tool]}).encode()
        body = body.replace(b'"PARAMS"', deep_body(b"", levels, b""))
        response = http.post("assistants", content=body, headers=json_type)
        check_error_body(response, 400, param="tools[0].function.parameters")
    check_error_body(
        http.post("assistants", json={"model": MODEL, "tools": [function]}),
        400,
        param="tools[0].function.parameters",
    )
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": nested_schema(300)}}
    check_error_body(
        http.post("assistants", json={"model": MODEL, "response_format": response_format}),
        400,
        param="response_format.json_schema.schema",
    )


def test_nested_schemas_within_the_limit_work(client):
    schema = nested_schema(25)
    assistant = client.beta.assistants.create(
        model=MODEL,
        tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    assert assistant.tools[0].function.parameters == schema
    assert client.beta.assistants.retrieve(assistant.id).response_format.json_schema.schema_ == schema


# ------------------------------------------------------------------------------------- strict fields


def test_strings_are_not_numbers_or_booleans(client):
    assistant = client.beta.assistants.create(model=MODEL)
    thread = client.beta.threads.create()
    cases = [
        ({"max_completion_tokens": "10"}, "max_completion_tokens"),
        ({"max_prompt_tokens": "500"}, "max_prompt_tokens"),
        (
            {"truncation_strategy": {"type": "last_messages", "last_messages": "2"}},
            "truncation_strategy.last_messages",
        ),
        ({"parallel_tool_calls": "true"}, "parallel_tool_calls"),
        ({"max_completion_tokens": 10.5}, "max_completion_tokens"),
        ({"max_completion_tokens": 2**63}, "max_completion_tokens"),  # past 64 bits: was a database 500
        ({"max_prompt_tokens": 2**64}, "max_prompt_tokens"),
        (
            {"truncation_strategy": {"type": "last_messages", "last_messages": 2**63}},
            "truncation_strategy.last_messages",
        ),
        (
            {"tools": [{"type": "file_search", "file_search": {"max_num_results": "5"}}]},
            "tools[0].file_search.max_num_results",
        ),
    ]
    for body, param in cases:
        with api_error(openai.BadRequestError, 400, param=param):
            client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, extra_body=body)
    with api_error(openai.BadRequestError, 400, param="tools[0].function.strict"):
        client.beta.assistants.create(
            model=MODEL, tools=[{"type": "function", "function": {"name": "f", "strict": "yes"}}]
        )
    # numbers as the SDK sends them still work (ints for floats too)
    updated = client.beta.assistants.update(assistant.id, temperature=1, top_p=0.5)
    assert updated.temperature == 1 and updated.top_p == 0.5
    run = client.beta.threads.runs.create(
        thread.id, assistant_id=assistant.id, max_completion_tokens=10, max_prompt_tokens=500
    )
    assert run.max_completion_tokens == 10 and run.max_prompt_tokens == 500
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


def test_image_url_must_be_a_url(client):
    thread = client.beta.threads.create()
    for url in ("not a url", "ftp://example.com/a.png", "javascript:alert(1)", "data:text/html,<b>x</b>", ""):
        content = [{"type": "image_url", "image_url": {"url": url}}]
        with api_error(openai.BadRequestError, 400, param="content[0].image_url.url"):
            client.beta.threads.messages.create(thread.id, role="user", content=content)  # type: ignore[arg-type]
    with api_error(openai.BadRequestError, 400, param="messages[0].content[1].image_url.url"):
        client.beta.threads.create(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "picture.png"}},
                    ],
                }
            ]
        )
    for url in ("https://example.com/cat.png", png_data_url()):
        content = [{"type": "image_url", "image_url": {"url": url, "detail": "low"}}]
        message = client.beta.threads.messages.create(thread.id, role="user", content=content)  # type: ignore[arg-type]
        assert message.content[0].image_url.url == url


# ------------------------------------------------------------------------------------------------ paths


def test_encoded_slashes_name_no_route(http):
    thread = http.post("threads", json={}).json()["id"]
    assert http.get(f"threads/{thread}/runs").status_code == 200
    for path in (
        f"threads/{thread}%2fruns",
        f"threads/{thread}%2Fruns",
        f"threads/{thread}%2F",
        "assistants%2F",
    ):
        check_error_body(http.get(path), 404, message="Invalid URL")
    check_error_body(http.post(f"threads/{thread}%2fmessages", json={"role": "user", "content": "x"}), 404)
    assert http.get(f"threads/{thread}/messages").json()["data"] == []
    check_error_body(http.get(f"threads/{thread}%00"), 404)


# --------------------------------------------------------------------------------------- reasoning_effort


def test_reasoning_effort_is_a_known_field(client, server):
    seen = len(server.log())  # the server is shared: other tests send it to objects that lack it (threads)
    assistant = client.beta.assistants.create(model=MODEL, reasoning_effort=None)
    client.beta.assistants.update(assistant.id, reasoning_effort="low")
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, reasoning_effort=None)
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    with api_error(openai.BadRequestError, 400, param="reasoning_effort"):
        client.beta.assistants.create(model=MODEL, extra_body={"reasoning_effort": "extreme"})
    unknown = [
        line
        for line in server.log()[seen:].splitlines()
        if "ignoring unknown fields" in line and "reasoning_effort" in line
    ]
    assert unknown == []


# --------------------------------------------------------------------------------------------------- NUL


def test_nul_characters_are_refused_naming_the_param(client, http):
    nul = "a\u0000b"
    assistant = client.beta.assistants.create(model=MODEL)
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(thread.id, role="user", content="hi")
    cases = [
        (lambda: client.beta.assistants.create(model=MODEL, name=nul), "name"),
        (lambda: client.beta.assistants.create(model=MODEL, instructions=nul), "instructions"),
        (lambda: client.beta.assistants.create(model=MODEL, metadata={"k": nul}), "metadata.k"),
        (lambda: client.beta.assistants.create(model=MODEL, metadata={nul: "v"}), "metadata"),
        (lambda: client.beta.assistants.update(assistant.id, description=nul), "description"),
        (lambda: client.beta.threads.create(metadata={"k": nul}), "metadata.k"),
        (lambda: client.beta.threads.update(thread.id, metadata={"k": nul}), "metadata.k"),
        (
            lambda: client.beta.threads.create(messages=[{"role": "user", "content": nul}]),
            "messages[0].content",
        ),
        (lambda: client.beta.threads.messages.create(thread.id, role="user", content=nul), "content"),
        (
            lambda: client.beta.threads.messages.create(
                thread.id, role="user", content=[{"type": "text", "text": nul}]
            ),
            "content[0].text",
        ),
        (
            lambda: client.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"k": nul}),
            "metadata.k",
        ),
        (
            lambda: client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, instructions=nul),
            "instructions",
        ),
        (
            lambda: client.beta.threads.runs.submit_tool_outputs(
                "run_x", thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_x", "output": nul}]
            ),
            "tool_outputs[0].output",
        ),
        (lambda: client.vector_stores.create(name=nul), "name"),
    ]
    for call, param in cases:
        with api_error(openai.BadRequestError, 400, param=param):
            call()
    check_error_body(http.get("assistants", params={"after": nul}), 400, param="after")
    # the SDK (httpx) writes a NUL in a file name as %00; a hand-made multipart body sends the byte itself
    for filename, purpose, param in (
        (b"a\x00b.txt", b"assistants", "file"),
        (b"a.txt", b"assis\x00tants", "purpose"),
    ):
        body = (
            b'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n' + purpose + b"\r\n"
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
            b"Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n"
        )
        headers = {"content-type": "multipart/form-data; boundary=XyZ"}
        check_error_body(http.post("files", content=body, headers=headers), 400, param=param)
    # nothing was stored: the objects made above are unchanged
    assert client.beta.threads.messages.list(thread.id).data[0].content[0].text.value == "hi"
    assert client.beta.assistants.retrieve(assistant.id).description is None
