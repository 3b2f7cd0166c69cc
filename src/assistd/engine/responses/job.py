"""A response as the turn loop reads a job: the loop's fields (those of a run: tools, tool_choice,
response_format, sampling, limits) translated from the Responses API's shapes. The job is never stored."""

from __future__ import annotations

from typing import Any

from assistd.storage.responses import ResponseRow
from assistd.storage.runs import RunRow


def job_of(row: ResponseRow) -> RunRow:
    """The response as the turn loop's job (a RunRow that is never added to a session)."""
    p = row.params
    tools = allowed_tools(p.get("tools") or [], p.get("tool_choice"))
    store_ids: list[str] = []
    for tool in tools:
        if tool.get("type") == "file_search":
            store_ids += tool.get("vector_store_ids") or []
    return RunRow(
        id=row.id,
        project=row.project,
        thread_id=row.container_id or "",  # the code interpreter session the response's code runs in
        assistant_id="",
        created_at=row.created_at,
        status=row.status,
        model=row.model,
        instructions=row.instructions or "",
        tools=loop_tools(tools),
        temperature=p.get("temperature"),
        top_p=p.get("top_p"),
        max_completion_tokens=p.get("max_output_tokens"),
        # "disabled" (the default, as hosted): a conversation past the context fails, nothing left out
        truncation_strategy={"type": "auto" if p.get("truncation") == "auto" else "disabled"},
        tool_choice=loop_tool_choice(p.get("tool_choice", "auto")),
        parallel_tool_calls=p.get("parallel_tool_calls", True),
        response_format=response_format(p.get("text")),
        reasoning_effort=(p.get("reasoning") or {}).get("effort"),
        tool_resources={"file_search": {"vector_store_ids": list(dict.fromkeys(store_ids))}},
        tool_rounds=row.tool_rounds,
    )


def loop_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Responses API's tools in the loop's (the Assistants API's) shape."""
    out: list[dict[str, Any]] = []
    for tool in tools:
        kind = tool["type"]
        if kind == "function":
            keys = ("name", "description", "parameters", "strict")
            fn = {k: tool[k] for k in keys if tool.get(k) is not None}
            out.append({"type": "function", "function": fn})
        elif kind == "file_search":
            options: dict[str, Any] = {}
            if tool.get("max_num_results") is not None:
                options["max_num_results"] = tool["max_num_results"]
            if tool.get("filters") is not None:  # on the files' attributes (services/vector_stores.py)
                options["filters"] = tool["filters"]
            ranking = tool.get("ranking_options") or {}
            if ranking.get("score_threshold") is not None:
                options["ranking_options"] = {
                    "ranker": "default_2024_08_21",
                    "score_threshold": ranking["score_threshold"],
                }
            out.append({"type": "file_search", "file_search": options})
        elif kind == "code_interpreter":
            out.append({"type": "code_interpreter"})
    return out


def allowed_tools(tools: list[dict[str, Any]], choice: Any) -> list[dict[str, Any]]:
    """The tools the model may call: with an `allowed_tools` tool_choice, only those it lists."""
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return tools
    listed = choice.get("tools") or []

    def allowed(tool: dict[str, Any]) -> bool:
        return any(
            a.get("type") == tool["type"] and (tool["type"] != "function" or a.get("name") == tool["name"])
            for a in listed
        )

    return [t for t in tools if allowed(t)]


def loop_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            return {"type": "function", "function": {"name": choice["name"]}}
        if kind in ("file_search", "code_interpreter"):
            return {"type": kind}
        if kind == "allowed_tools":
            return "required" if choice.get("mode") == "required" else "auto"
    return choice


def response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """`text.format` as the loop's response_format (None: plain text)."""
    fmt = (text or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return None
