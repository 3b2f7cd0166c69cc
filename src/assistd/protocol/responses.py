"""Requests of the Responses API: create (and count input tokens), with its tools, tool_choice and text
format. Items in `input` are parsed by protocol/items.py."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from assistd.protocol.base import (
    Metadata,
    ReasoningEffort,
    RequestModel,
    Temperature,
    TopP,
    WireModel,
    max_len,
)
from assistd.protocol.tools import FUNCTION_NAME

MAX_INT = 2**63 - 1  # what a 64-bit column holds: more is a 400 naming the param, never a 500
MAX_TOOLS = 128


class FunctionTool(WireModel):
    type: Literal["function"]
    name: str = Field(json_schema_extra={"pattern": FUNCTION_NAME})
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(FUNCTION_NAME, value):
            raise ValueError("function names contain only a-z, A-Z, 0-9, underscores and dashes, at most 64")
        return value


class RankingOptions(WireModel):
    ranker: Literal["auto", "default-2024-11-15", "default_2024_08_21", "none"] | None = None
    score_threshold: float | None = Field(None, ge=0, le=1)


class FileSearchTool(WireModel):
    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1, max_length=2)
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    filters: dict[str, Any] | None = None


class AutoContainer(WireModel):
    type: Literal["auto"]
    file_ids: list[str] | None = Field(None, max_length=50)
    memory_limit: str | None = None


class CodeInterpreterTool(WireModel):
    type: Literal["code_interpreter"]
    container: str | AutoContainer


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]


class FunctionChoice(WireModel):
    type: Literal["function"]
    name: str


class BuiltinChoice(WireModel):
    type: Literal["file_search", "code_interpreter"]


class AllowedTools(WireModel):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[FunctionChoice | BuiltinChoice | AllowedTools, Field(discriminator="type")]
)


class TextFormat(WireModel):
    type: Literal["text"]


class JsonObjectFormat(WireModel):
    type: Literal["json_object"]


class JsonSchemaFormat(WireModel):
    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(WireModel):
    format: (
        Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")] | None
    ) = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(WireModel):
    effort: ReasoningEffort = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ConversationRef(WireModel):
    id: str


class ResponseInput(RequestModel):
    """What a response's prompt is made of (create, and input_tokens)."""

    model: str | None = None
    input: str | list[Any] | None = None
    instructions: Annotated[str | None, max_len(256_000)] = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    truncation: Literal["auto", "disabled"] | None = None


class ResponseCreate(ResponseInput):
    max_output_tokens: int | None = Field(None, ge=16, le=MAX_INT)
    max_tool_calls: int | None = Field(None, ge=1, le=MAX_INT)
    temperature: Temperature = None
    top_p: TopP = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    metadata: Metadata = None
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    include: list[str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None


class ResponseObject(BaseModel):
    """A response as the API answers it (`openai.types.responses.Response`, every field); its items are the
    canonical item JSON (protocol/items.py)."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: str
    background: bool | None = None
    completed_at: int | None = None
    conversation: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    frequency_penalty: float = 0.0  # the hosted API's and the Open Responses spec's; not in the SDK's type
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    model: str
    output: list[dict[str, Any]]
    parallel_tool_calls: bool
    presence_penalty: float = 0.0
    previous_response_id: str | None = None
    prompt: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    reasoning: dict[str, Any] | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] | None = None
    tool_choice: Any
    tools: list[dict[str, Any]]
    top_logprobs: int | None = None
    top_p: float | None = None
    truncation: str | None = None
    usage: dict[str, Any] | None = None
    user: str | None = None
    access_programs: Any = None
    image: Any = None
    input_transformations: Any = None
    moderation: Any = None
    prompt_cache_diagnostics: Any = None
    prompt_cache_options: Any = None
    tool_usage: Any = None


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class InputTokens(BaseModel):
    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int
