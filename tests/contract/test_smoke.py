from __future__ import annotations

from openai.types.beta import Assistant

from tests.support import DEFAULT_MODEL, assert_shape, raw_json


def test_create_assistant_matches_sdk_shape(client):
    raw = client.beta.assistants.with_raw_response.create(model=DEFAULT_MODEL, name="smoke")
    assert_shape(raw_json(raw), Assistant)
    assistant = raw.parse()
    assert assistant.name == "smoke"
    assert client.beta.assistants.retrieve(assistant.id).id == assistant.id
