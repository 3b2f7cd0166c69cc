"""Rules on the model's tool use in a run: the names it calls the run's tools by, what `tool_choice`
forces on a turn, and the loop guards (a call repeated with the same arguments, too many tool rounds)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

if TYPE_CHECKING:
    from assistd.engine.reply import Call

SERVER_TOOLS = ("code_interpreter", "file_search")


class RoundLimit(Exception):
    pass


def tool_names(run: RunRow) -> list[str]:
    """The names the model calls this run's tools by (its functions, code_interpreter, file_search)."""
    return [t["function"]["name"] if t["type"] == "function" else t["type"] for t in run.tools]


def has_tool(run: RunRow, kind: str) -> bool:
    return any(t["type"] == kind for t in run.tools)


def forced(run: RunRow, functions: list[dict[str, Any]], steps: list[StepRow]) -> dict[str, Any] | None:
    """Grammar options when the run must call a tool, else None. A tool_choice that requires a call holds
    for the model's first turn, and again after code that raised (so the model tries again, up to
    max_tool_rounds); after a call that worked the model answers freely."""
    choice = run.tool_choice
    if not functions:
        return None
    rounds = [s for s in steps if s.type == "tool_calls" and not (s.engine_state or {}).get("auto")]
    if rounds and not (rounds[-1].engine_state or {}).get("code_failed"):
        return None
    if choice == "required":
        names = [f["name"] for f in functions if f["name"] not in SERVER_TOOLS]
        if run.parallel_tool_calls and len(names) >= 2:
            return {"names": names, "parallel": True}
        return {"parallel": run.parallel_tool_calls}
    if isinstance(choice, dict):
        name = choice["function"]["name"] if choice["type"] == "function" else choice["type"]
        if any(f["name"] == name for f in functions):
            return {"name": name, "parallel": False}
    return None


def code_only(forced: dict[str, Any], functions: list[dict[str, Any]]) -> bool:
    """Whether the forced call can only be a code_interpreter call."""
    if forced.get("name"):
        return forced["name"] == "code_interpreter"
    return [f["name"] for f in functions] == ["code_interpreter"]


def repeats(calls: list[Call], steps: list[StepRow]) -> bool:
    """Whether every call was already made, with the same arguments, earlier in this run."""
    seen = set()
    for step in steps:
        for call in step.step_details.get("tool_calls", []) if step.type == "tool_calls" else []:
            if call["type"] == "function":
                seen.add(_call_key(call["function"]["name"], call["function"]["arguments"]))
            elif call["type"] == "code_interpreter":
                seen.add(
                    _call_key("code_interpreter", json.dumps({"code": call["code_interpreter"]["input"]}))
                )
    return all(_call_key(c.name, c.arguments) in seen for c in calls)


def check_rounds(rounds: int, limit: int) -> None:
    """Ends the run when it made more than `limit` consecutive tool rounds without a final answer."""
    if rounds > limit:
        raise RoundLimit(
            f"The run stopped after {limit} consecutive tool rounds "
            "without a final answer (setting max_tool_rounds)."
        )


def _call_key(name: str, arguments: str) -> tuple[str, str]:
    try:
        return name, json.dumps(json.loads(arguments), sort_keys=True)
    except (TypeError, ValueError):
        return name, arguments
