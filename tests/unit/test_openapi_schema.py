"""What /schema/openapi.json declares: the request models the handlers parse, the OpenAI error body, Bearer
auth, the multipart upload, the query parameters and the event stream of the routes that can stream.
(tests/contract/test_openapi.py checks the server against it with schemathesis.)"""

from __future__ import annotations

import jsonschema
import pytest

from assistd.api.errors import domain_error
from assistd.app import create_app
from assistd.config import Settings
from assistd.errors import InvalidRequest, NotFound, Unauthenticated
from assistd.protocol.assistants import AssistantCreate
from assistd.protocol.runs import RunCreate

JSON = "application/json"


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"), api_keys={"sk-x": "p"}))
    return app.openapi_schema.to_schema()  # what /schema/openapi.json serves


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method in ("get", "post", "delete"):
            if method in item:
                yield method.upper(), path, item[method]


def resolve(spec: dict, schema: dict) -> dict:
    ref = schema.get("$ref", "")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def validator(spec: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """A validator for a schema of the document, its `#/components/schemas/...` refs resolved."""
    root = {**schema, "components": spec["components"]}
    return jsonschema.Draft202012Validator(root)


def test_every_json_body_is_the_request_model_the_handler_parses(spec):
    bodies = {}
    for method, path, op in operations(spec):
        if method == "POST" and "requestBody" in op:
            content = op["requestBody"]["content"]
            media = next(iter(content))
            bodies[path] = (media, content[media]["schema"])
    assert bodies["/v1/assistants"] == (JSON, {"$ref": "#/components/schemas/AssistantCreate"})
    assert bodies["/v1/threads/{thread_id}/runs"] == (JSON, {"$ref": "#/components/schemas/RunCreate"})
    for media, schema in bodies.values():
        assert schema != {} and "$ref" in schema, media
    assistant = resolve(spec, bodies["/v1/assistants"][1])
    assert assistant["required"] == ["model"]
    assert set(assistant["properties"]) == set(AssistantCreate.model_fields)
    tools = assistant["properties"]["tools"]["anyOf"][0]["items"]
    assert tools["discriminator"]["propertyName"] == "type"
    run = resolve(spec, bodies["/v1/threads/{thread_id}/runs"][1])
    assert set(run["properties"]) == set(RunCreate.model_fields)
    assert run["properties"]["temperature"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 2}


def test_the_declared_bodies_show_the_limits_the_validators_enforce(spec):
    assistant = spec["components"]["schemas"]["AssistantCreate"]["properties"]
    assert assistant["name"]["maxLength"] == 256
    metadata = assistant["metadata"]["anyOf"][0]
    assert metadata["maxProperties"] == 16
    assert metadata["propertyNames"] == {"maxLength": 64}
    assert metadata["additionalProperties"] == {"type": "string", "maxLength": 512}
    function = spec["components"]["schemas"]["FunctionDefinition"]["properties"]["name"]
    assert function["pattern"] == "^[a-zA-Z0-9_-]{1,64}$"


def test_the_declared_bodies_accept_what_the_parsers_accept(spec):
    body = {"model": "m", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}
    AssistantCreate.parse(body)
    schema = spec["paths"]["/v1/assistants"]["post"]["requestBody"]["content"][JSON]["schema"]
    validator(spec, schema).validate(body)
    with pytest.raises(jsonschema.ValidationError):
        validator(spec, schema).validate({"tools": []})  # no model: the parser refuses it too


def test_the_upload_is_a_multipart_form(spec):
    body = spec["paths"]["/v1/files"]["post"]["requestBody"]
    assert body["required"] is True
    form = resolve(spec, body["content"]["multipart/form-data"]["schema"])
    assert form["required"] == ["file", "purpose"]
    assert form["properties"]["file"]["format"] == "binary"
    assert "assistants" in form["properties"]["purpose"]["enum"]
    assert "expires_after[seconds]" in form["properties"]


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidRequest("bad", param="limit"), "400"),
        (Unauthenticated("no key"), "401"),
        (NotFound.of("x", "y"), "404"),
    ],
)
def test_errors_are_declared_as_the_body_the_server_sends(spec, exc, status):
    sent = domain_error(None, exc).content  # type: ignore[arg-type]  # the body api/errors.py sends
    for method, path, op in operations(spec):
        if status == "404" and "{" not in path and "requestBody" not in op:
            assert "404" not in op["responses"], f"{method} {path}"
            continue
        declared = op["responses"][status]["content"][JSON]["schema"]
        validator(spec, declared).validate(sent)
        error = resolve(spec, resolve(spec, declared)["properties"]["error"])
        assert sorted(error["required"]) == ["code", "message", "param", "type"], f"{method} {path}"


def test_no_litestar_error_shape_and_no_undeclared_conflict_codes(spec):
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            assert "status_code" not in str(response), f"{method} {path} {status}"
        assert "409" not in op["responses"] and "413" not in op["responses"]


def test_bearer_auth_is_declared(spec):
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "API key",
    }
    assert spec["security"] == [{"bearer": []}]


def test_query_parameters_are_declared_with_their_ranges(spec):
    def params(path: str) -> dict[str, dict]:
        return {
            p["name"]: p["schema"] for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "query"
        }

    page = params("/v1/assistants")
    assert page["limit"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert page["order"]["enum"] == ["asc", "desc"]
    assert {"after", "before"} <= set(page)
    assert params("/v1/files")["limit"]["maximum"] == 10_000
    steps = params("/v1/threads/{thread_id}/runs/{run_id}/steps")
    assert steps["include[]"]["type"] == "array"
    assert params("/v1/vector_stores/{vector_store_id}/files")["filter"]["enum"] == [
        "in_progress",
        "completed",
        "failed",
        "cancelled",
    ]


def test_usage_pages_declare_their_query_and_page(spec):
    for path in ("/v1/organization/usage/completions", "/v1/organization/usage/code_interpreter_sessions"):
        op = spec["paths"][path]["get"]
        query = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
        assert query["start_time"]["required"] is True
        assert query["start_time"]["schema"]["type"] == "integer"
        assert query["bucket_width"]["schema"]["enum"] == ["1m", "1h", "1d"]
        assert query["limit"]["schema"]["maximum"] == 1440
        assert "page" in query
        page = resolve(spec, op["responses"]["200"]["content"][JSON]["schema"])
        assert set(page["required"]) == {"data", "has_more", "next_page"}


def test_streaming_routes_answer_json_or_events(spec):
    for path in ("/v1/threads/{thread_id}/runs", "/v1/threads/runs"):
        content = spec["paths"][path]["post"]["responses"]["200"]["content"]
        assert content[JSON]["schema"] == {"$ref": "#/components/schemas/RunObject"}
        assert content["text/event-stream"]["schema"]["type"] == "string"


def test_model_list_and_file_content_are_typed(spec):
    models = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"][JSON]["schema"]
    assert resolve(spec, models)["properties"]["data"]["items"] == {
        "$ref": "#/components/schemas/ModelObject"
    }
    content = spec["paths"]["/v1/files/{file_id}/content"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["application/octet-stream"]
