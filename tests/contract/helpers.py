"""One-line checks for the contract tests: every response's JSON is compared with its openai.types model.

assistant = shaped(client.beta.assistants.with_raw_response.create(model=MODEL), Assistant)
page = shaped_list(client.beta.assistants.with_raw_response.list(limit=3), Assistant)
with api_error(openai.NotFoundError, 404, message="No assistant found with id 'asst_x'."):
    client.beta.assistants.retrieve("asst_x")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support import DEFAULT_MODEL, assert_shape, raw_json

MODEL = DEFAULT_MODEL
LIST_KEYS = {"object", "data", "first_id", "last_id", "has_more"}
ERROR_KEYS = {"message", "type", "param", "code"}


def shaped(raw: Any, model: type[BaseModel]) -> Any:
    """The parsed result of a `with_raw_response` call whose JSON has exactly the fields of `model`."""
    assert raw.http_response.status_code == 200
    assert raw.http_response.headers["content-type"].startswith("application/json")
    body = raw_json(raw)
    assert_shape(body, model)
    model.model_validate(body)  # the values too: types, literals (status, purpose, role...)
    return raw.parse()


def shaped_list(raw: Any, item: type[BaseModel], keys: set[str] = LIST_KEYS) -> Any:
    """A cursor list page: the envelope keys, first/last ids, and every item's shape."""
    body = raw_json(raw)
    assert set(body) == keys, sorted(body)
    assert body["object"] == "list"
    for element in body["data"]:
        assert_shape(element, item)
        item.model_validate(element)
    if "first_id" in keys:
        ids = [element["id"] for element in body["data"]]
        assert body["first_id"] == (ids[0] if ids else None)
        assert body["last_id"] == (ids[-1] if ids else None)
    return raw.parse()


@contextlib.contextmanager
def api_error(
    exc_type: type[Exception], status: int, *, param: str | None = None, message: str | None = None
) -> Iterator[Any]:
    """Expects the block to raise `exc_type` with an OpenAI error body ({error:{message,type,param,code}})."""
    with pytest.raises(exc_type) as info:
        yield info
    check_error_body(info.value.response, status, param=param, message=message)


def check_error_body(
    response: Any, status: int, *, param: str | None = None, message: str | None = None
) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert error["param"] == param, error
    if message is not None:
        assert message in error["message"], error["message"]
    return error


def upload(
    client: Any, data: bytes = b"hello world\n", name: str = "notes.txt", purpose: str = "assistants"
) -> Any:
    return client.files.create(file=(name, data), purpose=purpose)


def assert_ended(run: Any) -> None:
    """A run that ended by its own generation: `completed`, or `incomplete` at its token cap (a sampled reply
    may run on to the cap; CONVENTIONS, Rules). Nothing else: not failed, cancelled or expired."""
    assert run.status in ("completed", "incomplete"), (run.status, run.last_error)
    if run.status == "incomplete":
        assert run.incomplete_details.reason == "max_completion_tokens", run
