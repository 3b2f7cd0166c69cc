"""A response as the API shows it (the SDK's `openai.types.responses.Response`, every field), from its row
and its output items; and the Assistants annotations the engine makes, in the Responses API's shape."""

from __future__ import annotations

import re
from typing import Any

from assistd.storage.responses import ResponseRow

RESULTS = "file_search_call.results"
OUTPUTS = "code_interpreter_call.outputs"
LOGPROBS = "message.output_text.logprobs"
INCLUDES = (RESULTS, OUTPUTS, LOGPROBS, "reasoning.encrypted_content")


def response_object(
    row: ResponseRow, output: list[dict[str, Any]], include: tuple[str, ...] | list[str]
) -> dict:
    p = row.params
    reasoning = p.get("reasoning") or {}
    return {
        "id": row.id,
        "object": "response",
        "created_at": row.created_at,
        "status": row.status,
        "background": row.background,
        "completed_at": row.completed_at,
        "conversation": {"id": row.conversation_id} if row.conversation_id else None,
        "error": row.error,
        "frequency_penalty": 0.0,
        "incomplete_details": row.incomplete_details,
        "instructions": row.instructions,
        "max_output_tokens": p.get("max_output_tokens"),
        "max_tool_calls": p.get("max_tool_calls"),
        "metadata": row.meta or {},
        "model": row.model,
        "output": [shown_item(item, include) for item in output],
        "parallel_tool_calls": p.get("parallel_tool_calls", True),
        "presence_penalty": 0.0,
        "previous_response_id": row.previous_response_id,
        "prompt": None,
        "prompt_cache_key": p.get("prompt_cache_key"),
        "prompt_cache_retention": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": p.get("safety_identifier"),
        "service_tier": "default",
        "store": row.stored,
        "temperature": p.get("temperature", 1.0) if p.get("temperature") is not None else 1.0,
        "text": {"format": (p.get("text") or {}).get("format") or {"type": "text"}, "verbosity": "medium"},
        "tool_choice": p.get("tool_choice", "auto"),
        "tools": p.get("tools") or [],
        "top_logprobs": p.get("top_logprobs") or 0,
        "top_p": p.get("top_p") if p.get("top_p") is not None else 1.0,
        "truncation": p.get("truncation") or "disabled",
        "usage": row.usage,
        "user": p.get("user"),
        "access_programs": None,
        "image": None,
        "input_transformations": None,
        "moderation": None,
        "prompt_cache_diagnostics": None,
        "prompt_cache_options": None,
        "tool_usage": None,
    }


def shown_item(item: dict[str, Any], include: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """An output item as shown: search results and code outputs only when `include` asks for them."""
    if item.get("type") == "file_search_call" and RESULTS not in include:
        return {**item, "results": None}
    if item.get("type") == "code_interpreter_call" and OUTPUTS not in include:
        return {**item, "outputs": None}
    return item


MARKER_OPEN, MARKER_CLOSE = "【", "】"
MAX_MARKER = 300  # characters: text held back as a possible citation marker at most this long
MARKER = re.compile(r"【\d+:\d+†[^】]{0,256}】")  # engine/citations.py's `【round:index†filename】`


def strip_markers(text: str) -> str:
    return MARKER.sub("", text)


def unmarked(text: str, annotations: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The text without its citation markers, and its (Assistants) annotations at their places in it: a
    file citation where its marker was, a file path's span shifted by the markers before it."""
    spans = [m.span() for m in MARKER.finditer(text)]

    def moved(position: int) -> int:
        return position - sum(end - start for start, end in spans if end <= position)

    shifted = []
    for a in annotations:
        a = dict(a)
        if "start_index" in a:
            a["start_index"] = moved(a["start_index"])
        if "end_index" in a:
            a["end_index"] = moved(a["end_index"]) if a.get("type") != "file_citation" else a["start_index"]
        shifted.append(a)
    return strip_markers(text), shifted


def output_annotations(annotations: list[dict[str, Any]], container_id: str | None) -> list[dict[str, Any]]:
    """The engine's (Assistants) annotations as the Responses API's: file citations at their marker's
    position, files the code wrote as container file citations."""
    out: list[dict[str, Any]] = []
    for a in annotations:
        if a.get("type") == "file_citation":
            marker = a.get("text", "")
            filename = marker.split("†", 1)[1].rstrip("】") if "†" in marker else ""
            out.append(
                {
                    "type": "file_citation",
                    "file_id": a["file_citation"]["file_id"],
                    "filename": filename,
                    "index": a.get("start_index", 0),
                }
            )
        elif a.get("type") == "file_path":
            name = a.get("text", "").rsplit("/", 1)[-1]
            out.append(
                {
                    "type": "container_file_citation",
                    "container_id": container_id or "",
                    "file_id": a["file_path"]["file_id"],
                    "filename": name,
                    "start_index": a.get("start_index", 0),
                    "end_index": a.get("end_index", 0),
                }
            )
    return out
