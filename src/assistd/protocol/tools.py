"""Tools, tool resources and response formats, as assistants and runs accept them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from assistd.protocol.base import WireModel


class RankingOptions(WireModel):
    score_threshold: float = Field(ge=0, le=1)
    ranker: Literal["auto", "default_2024_08_21"] = "auto"


class FileSearchSettings(WireModel):
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionDefinition(WireModel):
    name: str = Field(json_schema_extra={"pattern": FUNCTION_NAME})  # checked (and worded) by _name
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(FUNCTION_NAME, value):
            raise ValueError("function names contain only a-z, A-Z, 0-9, underscores and dashes, at most 64")
        return value


class CodeInterpreterTool(WireModel):
    type: Literal["code_interpreter"]


class FileSearchTool(WireModel):
    type: Literal["file_search"]
    file_search: FileSearchSettings | None = None


class FunctionTool(WireModel):
    type: Literal["function"]
    function: FunctionDefinition


Tool = Annotated[CodeInterpreterTool | FileSearchTool | FunctionTool, Field(discriminator="type")]


class CodeInterpreterResources(WireModel):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class VectorStoreSpec(WireModel):
    """`tool_resources.file_search.vector_stores[]`: a store created inline from file ids."""

    file_ids: list[str] = Field(default_factory=list, max_length=10000)
    chunking_strategy: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class FileSearchResources(WireModel):
    vector_store_ids: list[str] | None = Field(None, max_length=1)
    vector_stores: list[VectorStoreSpec] | None = Field(None, max_length=1)


class ToolResources(WireModel):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class TextFormat(WireModel):
    type: Literal["text"]


class JsonObjectFormat(WireModel):
    type: Literal["json_object"]


class JsonSchemaSpec(WireModel):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(WireModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = (
    Literal["auto"] | Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]
)


def dump_response_format(value: Any) -> Any:
    """The stored/echoed form of a response_format ("auto" or the object with `schema` by its wire name)."""
    if value is None or isinstance(value, str):
        return value
    return value.model_dump(by_alias=True, exclude_none=True)


def dump_tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        data = tool.model_dump(exclude_none=False)
        if data["type"] == "function":
            fn = data["function"]
            data["function"] = {k: v for k, v in fn.items() if v is not None or k == "parameters"}
            if fn.get("parameters") is None:
                data["function"].pop("parameters")
        elif data["type"] == "file_search":
            settings = data.pop("file_search", None)
            if settings is not None:
                data["file_search"] = {k: v for k, v in settings.items() if v is not None}
        out.append(data)
    return out
