"""Request parsing against hostile input: strict types, the nesting limit (checked without recursion, before
pydantic, the grammar compiler or jsonschema see the body), NUL characters, and the raw request target."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.testing import TestClient

from assistd.api.body import JSONRequest, nesting_path
from assistd.api.errors import EXCEPTION_HANDLERS
from assistd.api.raw_target import check_raw_target
from assistd.errors import InvalidRequest
from assistd.protocol.assistants import AssistantCreate
from assistd.protocol.base import MAX_JSON_DEPTH, declared_prefix
from assistd.protocol.runs import RunCreate, SubmitToolOutputs
from assistd.protocol.vector_stores import VectorStoreSearch


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def refused(model, body: dict) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        model.parse(body)
    return info.value


def test_strict_numbers_and_booleans():
    for body, param in [
        ({"assistant_id": "a", "max_completion_tokens": "10"}, "max_completion_tokens"),
        ({"assistant_id": "a", "max_completion_tokens": 10.0}, "max_completion_tokens"),
        ({"assistant_id": "a", "max_completion_tokens": True}, "max_completion_tokens"),
        ({"assistant_id": "a", "stream": "false"}, "stream"),
        ({"assistant_id": "a", "parallel_tool_calls": 1}, "parallel_tool_calls"),
        ({"assistant_id": "a", "truncation_strategy": {"type": "auto", "last_messages": "3"}}, None),
    ]:
        error = refused(RunCreate, body)
        assert error.param == (param or "truncation_strategy.last_messages")
    run = RunCreate.parse({"assistant_id": "a", "max_completion_tokens": 10, "temperature": 1, "top_p": 0})
    assert run.max_completion_tokens == 10 and run.temperature == 1.0
    assert refused(SubmitToolOutputs, {"tool_outputs": [{"tool_call_id": "c", "output": 5}]}).param == (
        "tool_outputs[0].output"
    )


def test_nesting_limit_is_exact_and_names_the_param():
    # metadata sits one level down: MAX_JSON_DEPTH - 1 levels inside it are a type error, not too deep
    within = refused(AssistantCreate, {"model": "m", "metadata": nested(MAX_JSON_DEPTH - 1)})
    assert within.param == "metadata.a" and "nested" not in within.message
    deep = refused(AssistantCreate, {"model": "m", "metadata": nested(MAX_JSON_DEPTH)})
    assert deep.param == "metadata" and "nested more than" in deep.message
    tool = {"type": "function", "function": {"name": "f", "parameters": nested(500)}}
    assert refused(AssistantCreate, {"model": "m", "tools": [tool]}).param == "tools[0].function.parameters"
    search = {"query": "q", "filters": nested(200)}
    assert refused(VectorStoreSearch, search).param == "filters"


def test_recursive_filters_stop_at_the_limit_without_recursion_error():
    leaf: dict = {"key": "k", "type": "eq", "value": 1}
    for _ in range(400):
        leaf = {"type": "and", "filters": [leaf]}
    error = refused(VectorStoreSearch, {"query": "q", "filters": leaf})
    assert error.param.startswith("filters.filters[0]") and "nested more than" in error.message


def test_nul_in_any_string_or_key():
    cases = [
        (AssistantCreate, {"model": "m", "name": "a\x00"}, "name"),
        (AssistantCreate, {"model": "m", "metadata": {"k\x00": "v"}}, "metadata"),
        (AssistantCreate, {"model": "m\x00"}, "model"),
        (AssistantCreate, {"model": "m", "future\x00": 1}, "future\x00"),
        (
            RunCreate,
            {"assistant_id": "a", "additional_messages": [{"role": "user", "content": "\x00"}]},
            None,
        ),
    ]
    for model, body, param in cases:
        error = refused(model, body)
        assert error.param == (param or "additional_messages[0].content") and "NUL" in error.message


def test_declared_prefix_follows_the_models():
    path = ("tools", 0, "function", "parameters", "properties", "a")
    assert declared_prefix(AssistantCreate, path) == path[:4]
    assert declared_prefix(AssistantCreate, ("response_format", "json_schema", "schema", "x")) == (
        "response_format",
        "json_schema",
        "schema",
    )
    assert declared_prefix(AssistantCreate, ("nope", "a", "b")) == ("nope",)


def test_nesting_path_scans_tokens_not_text():
    body = b'{"s": "[[[{{{\\"", "x": [1, {"k": [[' + b"[" * 100 + b"]" * 100 + b"]]}]}"
    assert nesting_path(body, 5) == ("x", 1, "k", 0, 0)
    assert nesting_path(b'{"a": 1}', 5) == ()


@post("/echo", sync_to_thread=False, status_code=200)
def echo(data: Any = None) -> dict:
    return {"name": AssistantCreate.parse(data).name}


@get("/things/{thing_id:str}", sync_to_thread=False)
def thing(thing_id: str) -> dict:
    return {"id": thing_id}


@pytest.fixture
def client():
    app = Litestar(
        [echo, thing],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_class=JSONRequest,
        middleware=[check_raw_target],
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_bodies_too_deep_to_decode_are_400(client):
    headers = {"content-type": "application/json"}
    body = b'{"model": "m", "name": "n", "tools": [{"type": "function", "function": {"parameters": '
    body += b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}}]}"
    error = client.post("/echo", content=body, headers=headers).json()["error"]
    assert error["param"] == "tools[0].function.parameters" and "nested more than" in error["message"]
    response = client.post("/echo", content=b"[" * 50_000 + b"]" * 50_000, headers=headers)
    assert response.status_code == 400 and "JSON object" in response.json()["error"]["message"]
    assert client.post("/echo", json={"model": "m", "name": "fine"}).json() == {"name": "fine"}


def test_raw_target_checks(client):
    assert client.get("/things/a").json() == {"id": "a"}
    for raw in ("/things/a%2fb", "/things/a%2Fb", "/things/a%00"):
        response = client.get(raw)
        assert response.status_code == 404, raw
        assert raw in response.json()["error"]["message"]
    response = client.get("/things/a", params={"after": "x\x00"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "after"
