from __future__ import annotations

from typing import Any

from sqlalchemy import Index, text
from sqlmodel import SQLModel

from assistd.storage.columns import (
    big_int_field,
    id_field,
    json_field,
    metadata_field,
    parent_fk,
    ref_field,
    required_ref_field,
)

# "One active run per thread", held by the database itself whatever number of processes insert runs.
ACTIVE_SQL = text("status IN ('queued', 'in_progress', 'requires_action', 'cancelling')")


class RunRow(SQLModel, table=True):
    """A run. Besides the OpenAI fields it holds its claim: `worker_id`, `epoch` (one more at every claim or
    take-over; every write of the executing worker checks both, so a worker that lost the run writes
    nothing) and `lease_until` (database clock), renewed by the worker, so that a crashed worker's runs are
    found and taken over by others. `event_seq` numbers the run's events for streams on other nodes."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_page", "thread_id", "created_at", "id"),
        Index("ix_runs_status", "status"),
        Index(
            "ux_runs_active_thread",
            "thread_id",
            unique=True,
            sqlite_where=ACTIVE_SQL,
            postgresql_where=ACTIVE_SQL,
        ),
    )

    id: str = id_field()
    project: str
    thread_id: str = parent_fk("threads.id", index=False)
    assistant_id: str = required_ref_field()
    created_at: int = big_int_field()
    status: str = "queued"
    required_action: dict[str, Any] | None = json_field()
    last_error: dict[str, Any] | None = json_field()
    expires_at: int | None = big_int_field(None)
    started_at: int | None = big_int_field(None)
    cancelled_at: int | None = big_int_field(None)
    failed_at: int | None = big_int_field(None)
    completed_at: int | None = big_int_field(None)
    incomplete_details: dict[str, Any] | None = json_field()
    model: str
    instructions: str = ""
    tools: list[dict[str, Any]] = json_field(list, nullable=False)
    meta: dict[str, str] = metadata_field()
    usage: dict[str, int] | None = json_field()
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = big_int_field(None)
    max_completion_tokens: int | None = big_int_field(None)
    truncation_strategy: dict[str, Any] = json_field(dict, nullable=False)
    tool_choice: Any = json_field()
    parallel_tool_calls: bool = True
    response_format: Any = json_field()
    reasoning_effort: str | None = None  # the run's, else its assistant's
    # engine bookkeeping, never sent to clients
    tool_resources: dict[str, Any] | None = json_field()
    worker_id: str | None = ref_field()
    lease_until: float | None = None
    epoch: int = big_int_field(0)
    event_seq: int = big_int_field(0)
    tool_rounds: int = big_int_field(0)
