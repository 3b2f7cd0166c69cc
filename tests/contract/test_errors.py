"""Every error path answers an OpenAI error body: 404 for unknown ids, 400 naming the `param`, never a bare
500 or HTML; the OpenAI-Beta header is optional and unknown request fields are ignored."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message

from tests.contract.helpers import MODEL, api_error, check_error_body, shaped
from tests.support import KEY_A, assert_shape

BETA = {"OpenAI-Beta": "assistants=v2"}


@pytest.fixture(scope="module")
def http(server):
    """A plain HTTP client (no SDK, no OpenAI-Beta header) for requests the SDK cannot make."""
    with httpx.Client(base_url=f"{server.base_url}/v1", headers={"Authorization": f"Bearer {KEY_A}"}) as c:
        yield c


def test_unknown_ids_are_404(client):
    thread = client.beta.threads.create()
    cases = [
        (lambda: client.beta.assistants.retrieve("asst_nope"), "No assistant found with id 'asst_nope'."),
        (
            lambda: client.beta.assistants.update("asst_nope", name="x"),
            "No assistant found with id 'asst_nope'.",
        ),
        (lambda: client.beta.assistants.delete("asst_nope"), "No assistant found with id 'asst_nope'."),
        (lambda: client.beta.threads.retrieve("thread_nope"), "No thread found with id 'thread_nope'."),
        (
            lambda: client.beta.threads.update("thread_nope", metadata={}),
            "No thread found with id 'thread_nope'.",
        ),
        (lambda: client.beta.threads.delete("thread_nope"), "No thread found with id 'thread_nope'."),
        (lambda: client.beta.threads.messages.list("thread_nope"), "No thread found with id 'thread_nope'."),
        (
            lambda: client.beta.threads.messages.retrieve("msg_nope", thread_id=thread.id),
            "No message found with id 'msg_nope'.",
        ),
        (
            lambda: client.beta.threads.messages.update("msg_nope", thread_id=thread.id, metadata={}),
            "No message found with id 'msg_nope'.",
        ),
        (
            lambda: client.beta.threads.messages.delete("msg_nope", thread_id=thread.id),
            "No message found with id 'msg_nope'.",
        ),
        (lambda: client.files.retrieve("file-nope"), "No file found with id 'file-nope'."),
        (lambda: client.files.delete("file-nope"), "No file found with id 'file-nope'."),
        (lambda: client.files.content("file-nope"), "No file found with id 'file-nope'."),
    ]
    for call, message in cases:
        with api_error(openai.NotFoundError, 404, message=message):
            call()


LONG = "x" * 513
ASSISTANT_CASES = [
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": "0.5"}, "temperature"),
    ({"top_p": 2}, "top_p"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
    ({"metadata": {"k": LONG}}, "metadata"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"metadata": "tags"}, "metadata"),
    ({"name": "n" * 257}, "name"),
    ({"description": LONG}, "description"),
    ({"instructions": "i" * 256_001}, "instructions"),
    ({"name": 5}, "name"),
    ({"tools": [{"type": "browser"}]}, "tools[0].type"),
    ({"tools": [{"nope": 1}]}, "tools[0].type"),
    ({"tools": "code_interpreter"}, "tools"),
    ({"tools": [{"type": "code_interpreter"}] * 129}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f" * 65}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    (
        {"tools": [{"type": "file_search", "file_search": {"ranking_options": {"score_threshold": 2}}}]},
        "tools[0].file_search.ranking_options.score_threshold",
    ),
    (
        {"tools": [{"type": "file_search", "file_search": {"max_num_results": 51}}]},
        "tools[0].file_search.max_num_results",
    ),
    ({"response_format": "xml"}, "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    (
        {"tool_resources": {"code_interpreter": {"file_ids": ["file-x"] * 21}}},
        "tool_resources.code_interpreter.file_ids",
    ),
    (
        {"tool_resources": {"file_search": {"vector_store_ids": ["vs_1", "vs_2"]}}},
        "tool_resources.file_search.vector_store_ids",
    ),
]


@pytest.mark.parametrize(("body", "param"), ASSISTANT_CASES, ids=[p for _, p in ASSISTANT_CASES])
def test_assistant_validation_names_param(client, body, param):
    with api_error(openai.BadRequestError, 400, param=param):
        client.beta.assistants.create(model=MODEL, extra_body=body)


def test_update_validation_names_param(client):
    assistant = client.beta.assistants.create(model=MODEL, name="keep")
    for body, param in ASSISTANT_CASES[:12]:
        with api_error(openai.BadRequestError, 400, param=param):
            client.beta.assistants.update(assistant.id, extra_body=body)
    with api_error(openai.BadRequestError, 400, param="model"):
        client.beta.assistants.update(assistant.id, model="no-such-model")
    assert client.beta.assistants.retrieve(assistant.id) == assistant  # nothing changed


def test_missing_model(client, http):
    with api_error(
        openai.BadRequestError, 400, param="model", message="Missing required parameter: 'model'."
    ):
        client.beta.assistants.create(model=openai.NOT_GIVEN)  # type: ignore[arg-type]
    check_error_body(http.post("assistants", headers=BETA), 400, param="model")


def test_thread_and_message_validation(client):
    cases = [
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": "hello"}, "messages"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        (
            {"tool_resources": {"code_interpreter": {"file_ids": ["file-nope"]}}},
            "tool_resources.code_interpreter.file_ids[0]",
        ),
    ]
    for body, param in cases:
        with api_error(openai.BadRequestError, 400, param=param):
            client.beta.threads.create(extra_body=body)
    thread = client.beta.threads.create()
    with api_error(openai.BadRequestError, 400, param="metadata"):
        client.beta.threads.update(thread.id, metadata={"k": LONG})
    message = client.beta.threads.messages.create(thread.id, role="user", content="x")
    with api_error(openai.BadRequestError, 400, param="metadata"):
        client.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"k" * 65: "v"})
    with api_error(openai.BadRequestError, 400, param="content[0].text"):
        client.beta.threads.messages.create(thread.id, role="user", content=[{"type": "text"}])


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
    ],
)
def test_list_query_validation(client, query, param):
    thread = client.beta.threads.create()
    with api_error(openai.BadRequestError, 400, param=param):
        client.beta.assistants.list(extra_query=query)
    with api_error(openai.BadRequestError, 400, param=param):
        client.beta.threads.messages.list(thread.id, extra_query=query)


def test_unknown_cursor_is_400(client):
    with api_error(openai.BadRequestError, 400, param="after"):
        client.beta.assistants.list(after="not-an-id")


def test_unknown_url_and_wrong_method_are_json(http):
    check_error_body(http.get("nope"), 404, message="Invalid URL")
    check_error_body(http.get("/nope-at-root"), 404)
    check_error_body(http.put("assistants"), 405)
    check_error_body(http.patch("assistants/asst_x"), 405)
    check_error_body(http.delete("threads"), 405)


def test_malformed_bodies_are_400(http):
    for path in ("assistants", "threads", "assistants/asst_x"):
        check_error_body(
            http.post(path, content=b'{"model": ', headers={"content-type": "application/json", **BETA}), 400
        )
    check_error_body(http.post("assistants", json=["model"], headers=BETA), 400, message="JSON object")
    latin1 = '{"model": "x", "name": "caf\u00e9"}'.encode("latin-1")
    json_type = {"content-type": "application/json"}
    check_error_body(http.post("assistants", content=latin1, headers=json_type), 400, message="UTF-8")
    check_error_body(http.post("threads", content=b"   ", headers=json_type), 400, message="parse the JSON")
    check_error_body(http.post("assistants", json="text", headers=BETA), 400)


def test_beta_header_optional(http, client):
    plain = http.post("assistants", json={"model": MODEL, "name": "curl"})
    assert plain.status_code == 200
    assert_shape(plain.json(), Assistant)
    with_header = http.get(f"assistants/{plain.json()['id']}", headers=BETA)
    assert with_header.status_code == 200 and with_header.json() == plain.json()
    thread = http.post("threads", json={"messages": [{"role": "user", "content": "hi"}]})
    assert thread.status_code == 200
    assert_shape(thread.json(), Thread)
    listed = http.get(f"threads/{thread.json()['id']}/messages")
    assert listed.status_code == 200
    assert_shape(listed.json()["data"][0], Message)
    assert client.beta.assistants.retrieve(plain.json()["id"]).name == "curl"


def test_empty_bodies(http):
    thread = http.post("threads", headers=BETA)
    assert thread.status_code == 200
    assert_shape(thread.json(), Thread)
    assistant = http.post("assistants", json={"model": MODEL, "name": "same"}).json()
    same = http.post(f"assistants/{assistant['id']}")
    assert same.status_code == 200 and same.json() == assistant
    assert http.post(f"threads/{thread.json()['id']}").json() == thread.json()
    assert http.post(f"threads/{thread.json()['id']}", json=None).status_code == 200


def test_unknown_fields_are_ignored(client, server):
    body = {"reasoning_effort": "low", "some_new_field": 1}
    assistant = shaped(
        client.beta.assistants.with_raw_response.create(model=MODEL, name="extra", extra_body=body), Assistant
    )
    assert assistant.name == "extra"
    nested = {"tools": [{"type": "code_interpreter", "future_option": True}]}
    assert (
        client.beta.assistants.update(assistant.id, extra_body={**body, **nested}).tools[0].type
        == "code_interpreter"
    )
    thread = shaped(client.beta.threads.with_raw_response.create(extra_body=body), Thread)
    message = shaped(
        client.beta.threads.messages.with_raw_response.create(
            thread.id, role="user", content="hi", extra_body={"priority": "high"}
        ),
        Message,
    )
    assert message.content[0].text.value == "hi"
    assert "some_new_field" in server.log() and "ignoring unknown fields" in server.log()  # logged


def test_absurd_query_values_are_400(http):
    check_error_body(http.get("assistants", params={"limit": "1" * 400}), 400, param="limit")
    check_error_body(http.get("assistants", params={"limit": "-1"}), 400, param="limit")
    check_error_body(http.get("assistants", params={"after": "asst_" + "z" * 500}), 400, param="after")
