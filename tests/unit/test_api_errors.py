"""The one error mapping (api/errors.py) on a tiny in-process app: every failure is an OpenAI error body."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.testing import TestClient

from assistd.api.errors import EXCEPTION_HANDLERS
from assistd.cli import is_loopback
from assistd.errors import InvalidRequest, NotFound


@get("/boom", sync_to_thread=False)
def boom() -> dict:
    raise RuntimeError("secret internal detail")


@get("/missing", sync_to_thread=False)
def missing() -> dict:
    raise NotFound.of("assistant", "asst_1")


@post("/echo", sync_to_thread=False, status_code=200)
def echo(data: Any = None) -> dict:
    if data is not None and not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return {"data": data}


@pytest.fixture
def client():
    app = Litestar([boom, missing, echo], exception_handlers=EXCEPTION_HANDLERS, request_max_body_size=1000)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def error_of(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unexpected_error_is_json_500_without_details(client):
    error = error_of(client.get("/boom"), 500)
    assert error["type"] == "server_error" and "secret" not in error["message"]


def test_domain_errors(client):
    assert error_of(client.get("/missing"), 404)["message"] == "No assistant found with id 'asst_1'."
    assert (
        error_of(client.post("/echo", json=[1]), 400)["message"] == "The request body must be a JSON object."
    )


def test_framework_errors(client):
    assert "Invalid URL" in error_of(client.get("/nowhere"), 404)["message"]
    assert error_of(client.delete("/echo"), 405)["type"] == "invalid_request_error"
    headers = {"content-type": "application/json"}
    assert "parse the JSON" in error_of(client.post("/echo", content=b"{", headers=headers), 400)["message"]
    assert "UTF-8" in error_of(client.post("/echo", content=b'"\xe9"', headers=headers), 400)["message"]
    too_large = error_of(client.post("/echo", content=b"[" + b"1," * 1000 + b"1]", headers=headers), 400)
    assert too_large["code"] == "body_too_large" and too_large["param"] is None


def test_empty_bodies_reach_the_handler_as_none(client):
    assert client.post("/echo").json() == {"data": None}
    assert client.post("/echo", content=b"", headers={"content-type": "application/json"}).json() == {
        "data": None
    }
    assert client.post("/echo", json={"a": 1}).json() == {"data": {"a": 1}}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
