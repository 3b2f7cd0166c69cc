"""A thread's messages as conversation items (issue 18's migration from Assistants to Conversations).

User messages become `input_text` / `input_image` parts; assistant messages `output_text` with their
file citations and file paths as the Responses API writes them (`file_citation` with the file's name,
`file_path`; the index is where the Assistants marker starts, the text is kept as it was), refusals stay
refusals. What has no place in an item is left out and said in a note: an image in an assistant's
message, attachments (Responses takes files through its tools), and the thread's tool resources.
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from assistd.ids import new_id
from assistd.protocol.items import MESSAGE_PREFIX, STATUSES, input_text_part, output_text_part
from assistd.storage.files import FileRow
from assistd.storage.messages import MessageRow
from assistd.storage.threads import ThreadRow


def thread_items(s: Session, thread: ThreadRow) -> tuple[list[dict[str, Any]], list[str]]:
    """The thread's messages as canonical message items, oldest first, and the notes on what was left out."""
    query = select(MessageRow).where(MessageRow.thread_id == thread.id)
    rows = list(s.exec(query.order_by(MessageRow.created_at.asc(), MessageRow.id.asc())))  # type: ignore[attr-defined]
    cited = {_annotation_file(a) for row in rows for part in row.content for a in _annotations(part)}
    names = _filenames(s, thread.project, sorted(cited - {""}))
    notes: list[str] = []
    items = [_message_item(row, names, notes) for row in rows]
    return items, notes + _resource_notes(thread)


def _message_item(row: MessageRow, names: dict[str, str], notes: list[str]) -> dict[str, Any]:
    parts = []
    for i, part in enumerate(row.content):
        kind = part.get("type")
        if kind == "text" and row.role == "assistant":
            annotations = [_annotation(a, names) for a in _annotations(part)]
            parts.append(output_text_part(part["text"]["value"], [a for a in annotations if a]))
        elif kind == "text":
            parts.append(input_text_part(part["text"]["value"]))
        elif kind == "refusal" and row.role == "assistant":
            parts.append({"type": "refusal", "refusal": part.get("refusal", "")})
        elif kind in ("image_file", "image_url") and row.role != "assistant":
            parts.append(_image_part(part))
        else:
            notes.append(
                f"message {row.id}: its {kind} part (content[{i}]) has no place in the item; left out"
            )
    for attachment in row.attachments or []:
        tools = ", ".join(t.get("type", "?") for t in attachment.get("tools", [])) or "no tool"
        notes.append(
            f"message {row.id}: attachment {attachment.get('file_id')} ({tools}) is not an item; give a "
            "response its file through the file_search or code_interpreter tool"
        )
    status = row.status if row.status in STATUSES else "completed"
    item = {"id": new_id(MESSAGE_PREFIX), "type": "message", "status": status, "role": row.role}
    return {**item, "content": parts}


def _image_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "image_file":
        ref, file_id, url = part["image_file"], part["image_file"]["file_id"], None
    else:
        ref, file_id, url = part["image_url"], None, part["image_url"]["url"]
    detail = ref.get("detail") or "auto"
    return {"type": "input_image", "detail": detail, "file_id": file_id, "image_url": url}


def _annotations(part: dict[str, Any]) -> list[dict[str, Any]]:
    if part.get("type") != "text":
        return []
    return list(part["text"].get("annotations") or [])


def _annotation_file(annotation: dict[str, Any]) -> str:
    ref = annotation.get(annotation.get("type", ""))
    return ref.get("file_id", "") if isinstance(ref, dict) else ""


def _annotation(annotation: dict[str, Any], names: dict[str, str]) -> dict[str, Any] | None:
    """An Assistants text annotation as the Responses API writes it; None for one it has no form of."""
    kind = annotation.get("type")
    file_id = _annotation_file(annotation)
    index = max(0, int(annotation.get("start_index") or 0))
    if kind == "file_citation" and file_id:
        return {
            "type": "file_citation",
            "file_id": file_id,
            "filename": names.get(file_id, ""),
            "index": index,
        }
    if kind == "file_path" and file_id:
        return {"type": "file_path", "file_id": file_id, "index": index}
    return None


def _filenames(s: Session, project: str, file_ids: list[str]) -> dict[str, str]:
    if not file_ids:
        return {}
    query = select(FileRow.id, FileRow.filename).where(FileRow.project == project, FileRow.id.in_(file_ids))  # type: ignore[attr-defined]
    return dict(s.exec(query).all())


def _resource_notes(thread: ThreadRow) -> list[str]:
    resources = thread.tool_resources or {}
    notes = []
    stores = (resources.get("file_search") or {}).get("vector_store_ids") or []
    if stores:
        tool = {"type": "file_search", "vector_store_ids": stores}
        notes.append(
            f"thread {thread.id} searched vector stores {', '.join(stores)}: give a response {_tools(tool)}"
        )
    files = (resources.get("code_interpreter") or {}).get("file_ids") or []
    if files:
        tool = {"type": "code_interpreter", "container": {"type": "auto", "file_ids": files}}
        notes.append(
            f"thread {thread.id} gave the code interpreter {', '.join(files)}: give a response {_tools(tool)}"
        )
    return notes


def _tools(tool: dict[str, Any]) -> str:
    return f"tools=[{json.dumps(tool)}]"
