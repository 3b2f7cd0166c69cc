from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assistd.protocol.base import (
    Metadata,
    ReasoningEffort,
    RequestModel,
    Temperature,
    TopP,
    WireModel,
    max_len,
)
from assistd.protocol.messages import MessageCreate
from assistd.protocol.threads import ThreadCreate
from assistd.protocol.tools import ResponseFormat, Tool, ToolResources

MAX_RUN_TOOLS = 20
MAX_INT = 2**63 - 1  # what a 64-bit column holds: more is a 400 naming the param, never a database error
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
ACTIVE = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
# assistd's own include: a step's `reasoning` (what the model thought before it answered or called), for
# an operator debugging a run (the Playground's run inspector); never in a message, a delta or by default
REASONING = "reasoning"


class TruncationStrategy(WireModel):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(None, ge=1, le=MAX_INT)


class NamedFunction(WireModel):
    name: str


class FunctionChoice(WireModel):
    type: Literal["function"]
    function: NamedFunction


class BuiltinChoice(WireModel):
    type: Literal["code_interpreter", "file_search"]


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[FunctionChoice | BuiltinChoice, Field(discriminator="type")]
)


class RunOptions(RequestModel):
    """The fields shared by run creation and create-thread-and-run."""

    assistant_id: str
    model: str | None = None
    instructions: Annotated[str | None, max_len(256_000)] = None
    tools: list[Tool] | None = Field(None, max_length=MAX_RUN_TOOLS)
    metadata: Metadata = None
    temperature: Temperature = None
    top_p: TopP = None
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(None, ge=256, le=MAX_INT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class RunCreate(RunOptions):
    additional_instructions: str | None = None
    additional_messages: list[MessageCreate] | None = None
    reasoning_effort: ReasoningEffort = None  # to the model family's template (protocol.base)


class ThreadAndRunCreate(RunOptions):
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class RunUpdate(RequestModel):
    metadata: Metadata = None


class ToolOutput(WireModel):
    tool_call_id: str
    output: str


class SubmitToolOutputs(RequestModel):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


class RunObject(BaseModel):
    id: str
    object: Literal["thread.run"] = "thread.run"
    created_at: int
    thread_id: str
    assistant_id: str
    status: str
    required_action: dict[str, Any] | None
    last_error: dict[str, Any] | None
    expires_at: int | None
    started_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    incomplete_details: dict[str, Any] | None
    model: str
    instructions: str
    tools: list[dict[str, Any]]
    metadata: dict[str, str]
    usage: dict[str, int] | None
    temperature: float | None
    top_p: float | None
    max_prompt_tokens: int | None
    max_completion_tokens: int | None
    truncation_strategy: dict[str, Any]
    tool_choice: Any
    parallel_tool_calls: bool
    response_format: Any


class StepObject(BaseModel):
    model_config = ConfigDict(extra="allow")  # `reasoning`, only when asked for (REASONING)

    id: str
    object: Literal["thread.run.step"] = "thread.run.step"
    created_at: int
    assistant_id: str
    thread_id: str
    run_id: str
    type: str
    status: str
    step_details: dict[str, Any]
    last_error: dict[str, Any] | None
    expired_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    metadata: dict[str, str]
    usage: dict[str, int] | None
