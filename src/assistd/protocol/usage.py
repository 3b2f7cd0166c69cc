"""The pages of the organization usage API (services/usage.py builds them), as the OpenAPI schema shows."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

R = TypeVar("R")


class CompletionsResult(BaseModel):
    object: Literal["organization.usage.completions.result"] = "organization.usage.completions.result"
    input_tokens: int
    output_tokens: int
    input_cached_tokens: int
    num_model_requests: int
    project_id: str


class CodeInterpreterSessionsResult(BaseModel):
    object: Literal["organization.usage.code_interpreter_sessions.result"] = (
        "organization.usage.code_interpreter_sessions.result"
    )
    num_sessions: int
    project_id: str


class UsageBucket(BaseModel, Generic[R]):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[R]


class UsagePage(BaseModel, Generic[R]):
    object: Literal["page"] = "page"
    data: list[UsageBucket[R]]
    has_more: bool
    next_page: str | None
