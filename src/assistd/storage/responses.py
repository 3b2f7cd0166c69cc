from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from assistd.storage.columns import (
    BIG_INT,
    big_int_field,
    id_field,
    json_field,
    metadata_field,
    parent_fk,
    ref_field,
)


class ResponseRow(SQLModel, table=True):
    """A response of the Responses API. `params` holds what the request set and the response echoes
    (tools, tool_choice, text, reasoning, sampling, limits). Like a run it is a job of the work queue
    (engine/claims.py): `worker_id`, `epoch`, `lease_until` are its claim, `event_seq` numbers its stream
    events. `stored` is False for `store: false` (executed, never readable; deleted once it ends)."""

    __tablename__ = "responses"
    __table_args__ = (
        Index("ix_responses_status", "status"),
        Index("ix_responses_project", "project", "created_at", "id"),
    )

    id: str = id_field()
    project: str
    created_at: int = big_int_field()
    status: str = "queued"
    model: str
    instructions: str | None = None
    params: dict[str, Any] = json_field(dict, nullable=False)
    meta: dict[str, str] = metadata_field()
    previous_response_id: str | None = ref_field(index=True)
    conversation_id: str | None = ref_field(index=True)
    container_id: str | None = ref_field()  # the code interpreter session its code runs in
    background: bool = False
    stored: bool = True
    error: dict[str, Any] | None = json_field()
    incomplete_details: dict[str, Any] | None = json_field()
    usage: dict[str, Any] | None = json_field()
    started_at: int | None = big_int_field(None)
    completed_at: int | None = big_int_field(None)
    # the work queue's bookkeeping, never sent to clients
    expires_at: int | None = big_int_field(None)
    worker_id: str | None = ref_field()
    lease_until: float | None = None
    epoch: int = big_int_field(0)
    event_seq: int = big_int_field(0)
    tool_rounds: int = big_int_field(0)


class ResponseItemRow(SQLModel, table=True):
    """One item of a response: its input (`output` False: the request's items, in order) or its output
    (what the model and the tools made). `item_id` is the item's own id (`msg_…`, `fc_…`; a client may send
    the same input item again in a later request, so it is not a key). `state` is the engine's private
    note (what the model was shown of a search), never sent to clients."""

    __tablename__ = "response_items"

    response_id: str = parent_fk("responses.id", primary_key=True)
    seq: int = Field(primary_key=True, sa_type=BIG_INT)
    output: bool = False
    item_id: str | None = ref_field()
    type: str
    data: dict[str, Any] = json_field(dict, nullable=False)
    state: dict[str, Any] | None = json_field()


class ResponseEventRow(SQLModel, table=True):
    """A response's stream events, numbered per response like run events (engine/event_log.py): streams on
    any node read them in order, and `starting_after` resumes a stream from them."""

    __tablename__ = "response_events"
    __table_args__ = (Index("ix_response_events_created", "created_at"),)

    response_id: str = parent_fk("responses.id", primary_key=True)
    seq: int = Field(primary_key=True, sa_type=BIG_INT)
    name: str
    data: Any = json_field()
    created_at: float
