"""Service endpoints outside /v1: the health probe and the OpenAPI schema."""

from __future__ import annotations

import httpx


def test_health_needs_no_key(server):
    response = httpx.get(f"{server.base_url}/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_openapi_schema_renders(server):
    response = httpx.get(f"{server.base_url}/schema/openapi.json")
    assert response.status_code == 200, response.text
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/v1/assistants",
        "/v1/assistants/{assistant_id}",
        "/v1/threads",
        "/v1/threads/{thread_id}",
        "/v1/threads/{thread_id}/messages",
        "/v1/threads/{thread_id}/messages/{message_id}",
        "/v1/files",
        "/v1/files/{file_id}",
        "/v1/files/{file_id}/content",
        "/v1/models",
    ):
        assert path in paths, sorted(paths)
    assert "/health" not in paths
