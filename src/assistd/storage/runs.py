from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from assistd.storage.columns import json_field, metadata_field, parent_fk


class RunRow(SQLModel, table=True):
    """A run. Besides the OpenAI fields it holds who executes it: `worker_id` and `lease_until`, renewed by
    the executing process's heartbeat, so that a crashed process's runs are found and ended by others."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_page", "thread_id", "created_at", "id"),
        Index("ix_runs_status", "status"),
    )

    id: str = Field(primary_key=True)
    project: str
    thread_id: str = parent_fk("threads.id", index=False)
    assistant_id: str
    created_at: int
    status: str = "queued"
    required_action: dict[str, Any] | None = json_field()
    last_error: dict[str, Any] | None = json_field()
    expires_at: int | None = None
    started_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    incomplete_details: dict[str, Any] | None = json_field()
    model: str
    instructions: str = ""
    tools: list[dict[str, Any]] = json_field(list, nullable=False)
    meta: dict[str, str] = metadata_field()
    usage: dict[str, int] | None = json_field()
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] = json_field(dict, nullable=False)
    tool_choice: Any = json_field()
    parallel_tool_calls: bool = True
    response_format: Any = json_field()
    # engine bookkeeping, never sent to clients
    tool_resources: dict[str, Any] | None = json_field()
    worker_id: str | None = None
    lease_until: float | None = None
    tool_rounds: int = 0
