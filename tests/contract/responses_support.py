"""Checks for the Responses API contract tests (test_responses*.py): every response object, item and stream
event is read three ways - its JSON keys against the SDK's type (tests/support.py `shape_errors`), its values
by the SDK's pydantic type in strict mode, and by the Open Responses specification's published models
(`openresponses_types`, from mozilla.ai) - and a stream's event sequence against the hosted API's.

Where the three disagree (see SPEC_CONFLICTS), the hosted API decides what we send, and the check says which
key is let through and why."""

from __future__ import annotations

import copy
import json
import time
import typing
from typing import Any

import httpx
import openresponses_types as spec
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from tests.support import DEFAULT_MODEL, KEY_A, shape_errors

MODEL = DEFAULT_MODEL
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ITEM: TypeAdapter[Any] = TypeAdapter(ResponseItem)

# Keys the hosted API sends that the SDK's types lack (the SDK keeps unknown keys; the spec requires them):
# a response's `store`, `presence_penalty`, `frequency_penalty`; function_call_arguments.done's `name`.
HOSTED_EXTRAS = {
    "response": {"store", "presence_penalty", "frequency_penalty"},
    "response.function_call_arguments.done": {"name"},
}

# The spec's own models where they cannot describe what both the hosted API and the SDK send:
# - JsonSchemaResponseFormat.schema is typed `None` (the generator lost the schema's type): a response
#   echoing text.format json_schema carries the schema object, as hosted.
# - ResponseResource.tools lists only function tools; output items only messages, function calls and
#   outputs, reasoning and compaction (no file_search_call, code_interpreter_call).
SPEC_CONFLICTS = ("text.format.schema", "tools: function only", "output: no hosted-tool items")

SPEC_ITEM: TypeAdapter[Any] = TypeAdapter(
    spec.Message | spec.FunctionCall | spec.FunctionCallOutput | spec.ReasoningBody
)


def _spec_events() -> dict[str, type[BaseModel]]:
    out = {}
    for name in dir(spec):
        model = getattr(spec, name)
        if isinstance(model, type) and issubclass(model, BaseModel) and name.endswith("StreamingEvent"):
            annotation = model.model_fields["type"].annotation
            enum = typing.get_args(annotation)[0] if typing.get_origin(annotation) else annotation
            for member in getattr(enum, "__members__", {}).values():
                out[member.value] = model
    return out


SPEC_EVENTS = _spec_events()


def _shape(body: dict[str, Any], model: type[BaseModel], allowed: set[str], strict: bool = True) -> None:
    extras = HOSTED_EXTRAS["response"]
    errors = [
        e
        for e in shape_errors(body, model, strict=strict)
        if e.split(":")[0] not in {f"$.{k}" for k in allowed} | {f"$.response.{k}" for k in extras}
    ]
    assert not errors, f"{body.get('type') or body.get('object')} does not match {model.__name__}:\n" + (
        "\n".join(errors)
    )


def spec_response(body: dict[str, Any]) -> spec.ResponseResource:
    """The response by the spec's ResponseResource (its known conflicts set aside, see SPEC_CONFLICTS)."""
    data = copy.deepcopy(body)
    fmt = (data.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        assert isinstance(fmt.get("schema"), dict)
        fmt["schema"] = None
    return spec.ResponseResource.model_validate(data)


def check_response(body: dict[str, Any]) -> Response:
    """A response's JSON: the SDK's keys (plus the hosted API's extras), values strictly, and the spec."""
    assert body["object"] == "response", body
    _shape(body, Response, HOSTED_EXTRAS["response"])
    response = Response.model_validate(body, strict=True)
    spec_response(body)
    for item in body["output"]:
        check_item(item)
    usage = body["usage"]
    if usage is not None:
        assert set(usage["input_tokens_details"]) >= {"cached_tokens", "cache_write_tokens"}, usage
        assert set(usage["output_tokens_details"]) >= {"reasoning_tokens"}, usage
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    return response


def check_item(item: dict[str, Any]) -> Any:
    """An item (output or input): the SDK's item type of its `type`, no key it lacks; the spec's item."""
    parsed = ITEM.validate_python(item)
    errors = shape_errors(item, type(parsed), strict=False)
    assert not errors, errors
    if item["type"] in ("message", "function_call", "function_call_output", "reasoning"):
        SPEC_ITEM.validate_python(item)
    if item["type"] == "message" and item["role"] == "assistant":
        for part in item["content"]:
            if part["type"] == "output_text":
                assert part["annotations"] == [] or isinstance(part["annotations"], list)
    return parsed


def check_event(data: dict[str, Any]) -> Any:
    """One stream event: the SDK's event union (strict), no key its type lacks, the spec's event model."""
    event = STREAM_EVENT.validate_python(data, strict=True)
    _shape(data, type(event), HOSTED_EXTRAS.get(data["type"], set()), strict=False)
    model = SPEC_EVENTS.get(data["type"])
    assert model is not None, f"the spec has no event {data['type']}"
    if "response" in data:
        check_response(data["response"])
        model.model_validate({**data, "response": spec_response(data["response"]).model_dump(by_alias=True)})
    else:
        model.model_validate(data)
    if "item" in data:
        check_item(data["item"])
    if data["type"] in ("response.output_text.delta", "response.output_text.done"):
        assert data["logprobs"] == [], data
    if "part" in data and data["part"]["type"] == "output_text":
        assert data["part"]["annotations"] == [] or data["part"]["annotations"]
        assert "annotations" in data["part"]
    return event


# ------------------------------------------------------------------------------------------- raw streams
def sse(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    params: Any = None,
    key: str = KEY_A,
) -> list[dict[str, Any]]:
    """The events of a raw SSE stream: every frame's `event:` is its data's `type`; no `[DONE]`."""
    events: list[dict[str, Any]] = []
    with httpx.stream(
        method,
        f"{base_url}{path}",
        json=body,
        params=params,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        name, data = None, []
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
            elif line == "" and data:
                text = "\n".join(data)
                assert text != "[DONE]", "the Responses API's stream sends no [DONE]"
                payload = json.loads(text)
                assert name == payload["type"], (name, payload["type"])
                events.append(payload)
                name, data = None, []
    return events


TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def check_stream(events: list[dict[str, Any]], first: int = 0) -> dict[str, Any]:
    """A whole stream (from sequence number `first`): every event checked, numbered one by one, in the
    hosted API's lifecycle; each item's deltas make its final text or arguments. Returns the final
    response's JSON."""
    assert events, "no events"
    for event in events:
        check_event(event)
    assert [e["sequence_number"] for e in events] == list(range(first, first + len(events)))
    if first == 0:
        assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in TERMINAL
    assert not any(e["type"] in TERMINAL for e in events[:-1])
    final = events[-1]["response"]
    items: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        if "output_index" in event:
            items.setdefault(event["output_index"], []).append(event)
    if first == 0:
        assert sorted(items) == list(range(len(final["output"])))
    for index, mine in items.items():
        if mine[0]["type"] == "response.output_item.added":  # (a resumed stream may begin mid-item)
            check_item_events(mine, final["output"][index])
    return final


def check_item_events(events: list[dict[str, Any]], item: dict[str, Any]) -> None:
    """One output item's events, in order: added, its parts' lifecycle, done; what they carry adds up."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.output_item.added" and kinds[-1] == "response.output_item.done", kinds
    added, done = events[0]["item"], events[-1]["item"]
    assert added["id"] == done["id"] == item["id"] and added["type"] == item["type"]
    assert added["status"] == "in_progress"
    assert done == item, (done, item)
    for e in events[1:-1]:
        assert e["item_id"] == item["id"], e
    if item["type"] == "message":
        assert added["content"] == []
        middle = kinds[1:-1]
        assert middle[0] == "response.content_part.added"
        assert middle[-2:] == ["response.output_text.done", "response.content_part.done"], middle
        assert set(middle[1:-2]) <= {"response.output_text.delta", "response.output_text.annotation.added"}
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        text_done = events[-3]["text"]
        part_done = events[-2]["part"]
        assert events[1]["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        assert deltas == text_done == part_done["text"] == item["content"][0]["text"]
        assert part_done == item["content"][0]
    elif item["type"] == "function_call":
        middle = kinds[1:-1]
        assert middle[-1] == "response.function_call_arguments.done", middle
        assert set(middle[:-1]) <= {"response.function_call_arguments.delta"}
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
        assert events[-2]["arguments"] == item["arguments"]
        assert deltas == item["arguments"], (deltas, item["arguments"])
        assert added["arguments"] == "" and added["call_id"] == item["call_id"]


def wait_done(client: Any, response_id: str, timeout: float = 60) -> Response:
    """The response once it has ended (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        time.sleep(0.1)
    raise AssertionError(f"{response_id} did not end")
