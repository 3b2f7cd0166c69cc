"""The run's tools as the model sees them (function definitions) and the server-side tools' execution.

code_interpreter and file_search are offered to the model as functions named after them; their calls run
here, on the sandboxed kernel and the vector stores, and their results loop back into the model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from assistd.config import ModelEntry
from assistd.engine import citations
from assistd.errors import NotFound
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.tools.code_interpreter.interpreter import CodeInterpreterUnavailable

CODE_INTERPRETER = {
    "name": "code_interpreter",
    "description": "Run Python code in a Jupyter kernel and see its output. "
    "The user's files are in /mnt/data; "
    "files you write to /mnt/data are given to the user. Use print() to show results.",
    "parameters": {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python code to run"}},
        "required": ["code"],
    },
}
FILE_SEARCH = {
    "name": "file_search",
    "description": "Search the user's files for passages relevant to a query.",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "what to look for"}},
        "required": ["query"],
    },
}
BUILTIN = {"code_interpreter": CODE_INTERPRETER, "file_search": FILE_SEARCH}


class ToolUnavailable(Exception):
    pass


RESPONSE_PREFIX = "resp_"


@dataclass
class CodeRun:
    outputs: list[dict[str, Any]]
    images: list[str] = field(default_factory=list)  # file ids of displayed images
    files: list[tuple[str, str]] = field(default_factory=list)  # (file id, filename) written by the code
    error: bool = False  # the code raised, timed out or lost its kernel


def offered_functions(run: RunRow, entry: ModelEntry, has_stores: bool) -> list[dict[str, Any]]:
    """The function definitions the model may call in this run."""
    if run.tool_choice == "none":
        return []
    functions = []
    for tool in run.tools:
        kind = tool["type"]
        if kind == "function":
            fn = tool["function"]
            functions.append({k: v for k, v in fn.items() if k in ("name", "description", "parameters")})
        elif kind == "code_interpreter":
            functions.append(CODE_INTERPRETER)
        elif kind == "file_search" and has_stores and entry.file_search_query == "model":
            functions.append(FILE_SEARCH)
    return functions


def chat_tools(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Functions as chat templates take them; a description is optional in the API, not to every template
    (gpt-oss's reads it unguarded)."""
    return [{"type": "function", "function": {"description": "", **fn}} for fn in functions]


def file_search_settings(run: RunRow, entry: ModelEntry) -> tuple[int, float]:
    for tool in run.tools:
        if tool["type"] == "file_search":
            opts = tool.get("file_search") or {}
            ranking = opts.get("ranking_options") or {}
            return int(opts.get("max_num_results") or entry.file_search_max_results), float(
                ranking.get("score_threshold") or 0.0
            )
    return entry.file_search_max_results, 0.0


class Toolbox:
    """Server-side tool execution, on the services plugged into the container."""

    def __init__(self, extras: dict[str, Any], files: Any, blobs: Any) -> None:
        self.extras = extras
        self.files = files
        self.blobs = blobs
        self.images: Any = None  # the ImageCache of prompts' images (engine/images.py), set by the container

    # ------------------------------------------------------------------------------------ file_search
    def store_ids(self, run: RunRow, assistant_res: dict[str, Any], thread_res: dict[str, Any]) -> list[str]:
        ids: list[str] = []
        for res in (assistant_res, thread_res):
            ids += (res.get("file_search") or {}).get("vector_store_ids") or []
        service = self.extras.get("file_search")
        if service is not None and hasattr(service, "thread_store_ids"):
            ids += service.thread_store_ids(run.project, run.thread_id)
        return list(dict.fromkeys(ids))

    def pending_files(self, run: RunRow, store_ids: list[str]) -> int:
        """Files of these stores still being indexed."""
        service = self.extras.get("file_search")
        if service is None:
            return 0
        pending = 0
        for store_id in store_ids:
            try:
                pending += service.get(run.project, store_id).file_counts.in_progress
            except NotFound:  # a store deleted since it was named: nothing to wait for
                continue
        return pending

    def search(
        self, run: RunRow, store_ids: list[str], query: str, max_results: int, threshold: float, round_no: int
    ) -> tuple[dict[str, Any], list[citations.Source], str]:
        service = self.extras.get("file_search")
        if service is None:
            raise ToolUnavailable("file_search is not available on this server")
        filters = next(
            (t.get("file_search", {}).get("filters") for t in run.tools if t["type"] == "file_search"), None
        )
        hits = service.search(
            run.project,
            store_ids,
            query,
            max_num_results=max_results,
            score_threshold=threshold,
            filters=filters,
        )
        sources = citations.sources_for(round_no, hits)
        details = {
            "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": threshold},
            "results": [
                {
                    "file_id": h.file_id,
                    "file_name": h.filename,
                    "score": round(float(h.score), 6),
                    "content": [{"type": "text", "text": h.text}],
                }
                for h in hits
            ],
        }
        return details, sources, citations.render_results(query, sources)

    # ------------------------------------------------------------------------------- code_interpreter
    def input_files(
        self,
        run: RunRow,
        assistant_res: dict[str, Any],
        thread_res: dict[str, Any],
        history: list[MessageRow],
    ) -> list[tuple[str, bytes]]:
        ids: list[str] = []
        for res in (assistant_res, thread_res):
            ids += (res.get("code_interpreter") or {}).get("file_ids") or []
        for message in history:
            for attachment in getattr(message, "attachments", None) or []:
                if any(t.get("type") == "code_interpreter" for t in attachment.get("tools", [])):
                    ids.append(attachment["file_id"])
        files = []
        for file_id in dict.fromkeys(ids):
            try:
                obj = self.files.get(run.project, file_id)
            except NotFound:  # a file deleted since it was attached: nothing to copy in
                continue
            files.append((obj.filename, self.blobs.path(file_id).read_bytes()))
        return files

    def run_code(self, run: RunRow, code: str, inputs: list[tuple[str, bytes]]) -> CodeRun:
        if run.id.startswith(RESPONSE_PREFIX):  # a response's code runs in its container
            return self._run_in_container(run, code)
        interpreter = self.extras.get("code_interpreter")
        if interpreter is None:
            raise ToolUnavailable("code_interpreter is not available on this server")
        if (reason := interpreter.unavailable_reason()) is not None:  # no sandbox: it fails closed
            raise ToolUnavailable(reason.rstrip("."))
        result = interpreter.execute(run.project, run.thread_id, code, inputs)
        outputs: list[dict[str, Any]] = []
        out = CodeRun(outputs=outputs, error=result.error)
        if result.logs:
            outputs.append({"type": "logs", "logs": result.logs})
        for i, png in enumerate(result.images):
            obj = self.files.create_from_bytes(
                run.project, f"image-{run.id}-{i}.png", "assistants_output", png
            )
            outputs.append({"type": "image", "image": {"file_id": obj.id}})
            out.images.append(obj.id)
        for name, data in result.files:
            obj = self.files.create_from_bytes(run.project, name, "assistants_output", data)
            out.files.append((obj.id, name))
        return out

    def _run_in_container(self, run: RunRow, code: str) -> CodeRun:
        """The job's `thread_id` is its container (engine/responses/job.py); what the code wrote in
        /mnt/data are container files (the message cites them by their container file id)."""
        containers = self.extras.get("containers")
        if containers is None or not run.thread_id:
            raise ToolUnavailable("code_interpreter is not available on this server")
        try:
            result = containers.run_code(run.project, run.thread_id, code)
        except CodeInterpreterUnavailable as exc:  # no sandbox: it fails closed
            raise ToolUnavailable(str(exc).rstrip(".")) from exc
        outputs: list[dict[str, Any]] = [{"type": "logs", "logs": result.logs}] if result.logs else []
        outputs += [{"type": "image", "image": {"file_id": ref.file_id}} for ref in result.images]
        return CodeRun(
            outputs=outputs,
            images=[ref.file_id for ref in result.images],
            files=[(ref.file_id, ref.filename) for ref in result.files],
            error=result.error,
        )


def code_argument(arguments: str) -> str:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    return value.get("code", "") if isinstance(value, dict) else str(value)


def query_argument(arguments: str) -> str:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    return str(value.get("query", "")) if isinstance(value, dict) else str(value)
