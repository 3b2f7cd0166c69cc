"""Rows of runs and run steps as the protocol objects clients see."""

from __future__ import annotations

from assistd.protocol.runs import FILE_SEARCH_CONTENT, REASONING, StepObject
from assistd.protocol.runs import RunObject as RunObject
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow


def run_object(row: RunRow) -> RunObject:
    return RunObject(
        id=row.id,
        created_at=row.created_at,
        thread_id=row.thread_id,
        assistant_id=row.assistant_id,
        status=row.status,
        required_action=row.required_action,
        last_error=row.last_error,
        expires_at=row.expires_at,
        started_at=row.started_at,
        cancelled_at=row.cancelled_at,
        failed_at=row.failed_at,
        completed_at=row.completed_at,
        incomplete_details=row.incomplete_details,
        model=row.model,
        instructions=row.instructions,
        tools=row.tools,
        metadata=row.meta,
        usage=row.usage,
        temperature=row.temperature,
        top_p=row.top_p,
        max_prompt_tokens=row.max_prompt_tokens,
        max_completion_tokens=row.max_completion_tokens,
        truncation_strategy=row.truncation_strategy,
        tool_choice=row.tool_choice,
        parallel_tool_calls=row.parallel_tool_calls,
        response_format=row.response_format,
    )


def step_object(row: StepRow, include: tuple[str, ...] = ()) -> StepObject:
    details = row.step_details
    if row.type == "tool_calls" and FILE_SEARCH_CONTENT not in include:
        details = _without_result_content(details)
    extra = {}
    if REASONING in include:
        extra["reasoning"] = (row.engine_state or {}).get("reasoning")
    return StepObject(
        **extra,
        id=row.id,
        created_at=row.created_at,
        assistant_id=row.assistant_id,
        thread_id=row.thread_id,
        run_id=row.run_id,
        type=row.type,
        status=row.status,
        step_details=details,
        last_error=row.last_error,
        expired_at=row.expired_at,
        cancelled_at=row.cancelled_at,
        failed_at=row.failed_at,
        completed_at=row.completed_at,
        metadata=row.meta,
        usage=row.usage,
    )


def _without_result_content(details: dict) -> dict:
    calls = []
    for call in details.get("tool_calls", []):
        if call.get("type") == "file_search" and call.get("file_search", {}).get("results"):
            results = [{k: v for k, v in r.items() if k != "content"} for r in call["file_search"]["results"]]
            call = {**call, "file_search": {**call["file_search"], "results": results}}
        calls.append(call)
    return {**details, "tool_calls": calls}
