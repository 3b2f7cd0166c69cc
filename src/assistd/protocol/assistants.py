from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from assistd.protocol.base import Metadata, ReasoningEffort, RequestModel, Temperature, TopP, max_len
from assistd.protocol.tools import ResponseFormat, Tool, ToolResources

MAX_TOOLS = 128


class AssistantCreate(RequestModel):
    model: str
    name: Annotated[str | None, max_len(256)] = None
    description: Annotated[str | None, max_len(512)] = None
    instructions: Annotated[str | None, max_len(256_000)] = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None
    temperature: Temperature = None
    top_p: TopP = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort = None  # to the model family's template (protocol.base)


class AssistantUpdate(AssistantCreate):
    model: str | None = None  # type: ignore[assignment]


class AssistantObject(BaseModel):
    id: str
    object: Literal["assistant"] = "assistant"
    created_at: int
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: list[dict[str, Any]]
    tool_resources: dict[str, Any] | None
    metadata: dict[str, str]
    temperature: float | None
    top_p: float | None
    response_format: Any
