"""What the run engine sees: a parsed reply, and the ToolFormat protocol each template family implements."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class ParsedCall:
    name: str
    arguments: str  # a JSON object as a string


@dataclass
class ParsedReply:
    text: str  # the reply text outside tool calls (stripped)
    calls: list[ParsedCall] = field(default_factory=list)


class ToolFormat(Protocol):
    name: str  # "hermes" | "llama3" | "generic"
    start_marker: str  # the text that opens a tool call in this format
    single_call: bool  # one call per reply (harmony)
    structured_history: bool  # templates that take tools get the run's calls as `tool_calls`

    def prepare(
        self, messages: list[dict], tools: list[dict], template_takes_tools: bool
    ) -> tuple[list[dict], list[dict] | None]: ...

    def parse(self, text: str) -> ParsedReply: ...

    def stop_markers(self, names: Iterable[str]) -> tuple[str, ...]: ...  # stop strings when tools are off

    def call_markers(
        self, names: Iterable[str]
    ) -> tuple[str, ...]: ...  # what opens a call when tools are on

    def visible_text(self, text: str, names: Iterable[str]) -> str: ...

    def head(self, before: str) -> str: ...  # the prompt's end before grammar(..., continuation=True)

    def grammar(
        self,
        functions: list[dict],
        *,
        name: str | None = None,
        parallel: bool = True,
        continuation: bool = False,
        names: list[str] | None = None,
        all_functions: bool = False,
        max_calls: int = 8,
    ) -> str: ...
