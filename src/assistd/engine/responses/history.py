"""What the model reads of a response's conversation: items (the earlier responses of its chain, or its
conversation, then its input) as chat turns. System and developer messages join the system prompt; calls
and their outputs become the assistant's tool calls and the tool's answers; reasoning items are not shown
again (families read a turn's reasoning only within its own tool loop)."""

from __future__ import annotations

import json
from typing import Any

from assistd.engine import images


def system_texts(items: list[dict[str, Any]]) -> list[str]:
    return [  # images in system or developer messages are not shown (the system prompt is text)
        images.without_refs(content_text(item.get("content")))
        for item in items
        if item.get("type") == "message" and item.get("role") in ("system", "developer")
    ]


def chat_turns(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items as chat turns; text messages of one role in a row are one turn (templates that insist on
    alternating roles refuse them apart)."""
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call_id -> the tool's name (a tool turn names its function)
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                continue
            text = content_text(item.get("content"))
            _text_turn(turns, "assistant" if role == "assistant" else "user", text)
        elif kind in ("function_call", "file_search_call", "code_interpreter_call"):
            call_id, name, arguments = _call(item)
            names[call_id] = name
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            last = turns[-1] if turns else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
                last["tool_calls"].append(call)
            else:
                turns.append({"role": "assistant", "content": "", "tool_calls": [call]})
            output = _server_output(item)
            if output is not None:
                turns.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": output})
        elif kind == "function_call_output":
            call_id = item.get("call_id", "")
            turns.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "name": names.get(call_id, "function"),
                    "content": content_text(item.get("output")),
                }
            )
    return turns


def content_text(content: Any) -> str:
    """A message's (or an output's) content as text: its text parts; images and files as notes."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "reasoning_text", "summary_text"):
            parts.append(part.get("text") or "")
        elif kind == "refusal":
            parts.append(part.get("refusal") or "")
        elif kind == "input_image":
            parts.append(images.ref(part))  # resolved when the turn is built (engine/images.py)
        elif kind == "input_file":
            parts.append(f"(attached file: {part.get('filename') or part.get('file_id') or 'a file'})")
    return "\n".join(p for p in parts if p)


def last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            return images.without_refs(content_text(item.get("content")))
    return ""


def _text_turn(turns: list[dict[str, Any]], role: str, text: str) -> None:
    last = turns[-1] if turns else None
    if last is not None and last["role"] == role and not last.get("tool_calls"):
        last["content"] = f"{last['content']}\n\n{text}" if last["content"] else text
    else:
        turns.append({"role": role, "content": text})


def _call(item: dict[str, Any]) -> tuple[str, str, str]:
    kind = item["type"]
    if kind == "function_call":
        return item.get("call_id", ""), item.get("name", ""), item.get("arguments") or "{}"
    if kind == "code_interpreter_call":
        return item.get("id", ""), "code_interpreter", json.dumps({"code": item.get("code") or ""})
    queries = item.get("queries") or []
    return item.get("id", ""), "file_search", json.dumps({"query": queries[0] if queries else ""})


def _server_output(item: dict[str, Any]) -> str | None:
    """What a server-side tool call gave back, as the model read it (None for a function call: the client
    answers it with a function_call_output item)."""
    if item["type"] == "code_interpreter_call":
        logs = [o.get("logs", "") for o in item.get("outputs") or [] if o.get("type") == "logs"]
        return "\n".join(logs) or "(no output)"
    if item["type"] == "file_search_call":
        results = item.get("results") or []
        if not results:
            return "(no results)"
        return "\n\n".join(f"{r.get('filename', '')}: {r.get('text', '')}" for r in results)
    return None
