"""Every state change of an executing run: one short transaction each, then the matching event."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import or_, true, update
from sqlmodel import select

from assistd.engine.events import EventBus
from assistd.ids import created_at_of, new_id, now
from assistd.protocol.messages import text_part
from assistd.protocol.runs import TERMINAL
from assistd.services.messages import PREFIX as MESSAGE_PREFIX
from assistd.services.messages import to_object as message_object
from assistd.services.run_views import run_object, step_object
from assistd.services.runs import STEP_PREFIX
from assistd.storage.assistants import AssistantRow
from assistd.storage.db import Database
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow
from assistd.storage.threads import ThreadRow

STAMP = {
    "completed": "completed_at",
    "failed": "failed_at",
    "cancelled": "cancelled_at",
    "expired": "expired_at",
}
RUN_STAMP = {**STAMP, "expired": None, "incomplete": None}
MESSAGE_REASON = {"cancelled": "run_cancelled", "expired": "run_expired", "failed": "run_failed"}


class RunStore:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus

    # ------------------------------------------------------------------------------------ ownership
    def claim(self, run_id: str, worker_id: str, lease_seconds: int, force: bool = False) -> bool:
        """Takes the run for this worker if it is waiting and nobody else holds a live lease on it (with
        `force`, whatever lease it has: its holder is known to be dead)."""
        stamp = time.time()
        free = or_(RunRow.worker_id == worker_id, RunRow.worker_id == None, RunRow.lease_until < stamp)  # noqa: E711
        with self.db.session() as s:
            result = s.exec(  # type: ignore[call-overload]
                update(RunRow)
                .where(
                    RunRow.id == run_id,
                    RunRow.status.in_(("queued", "cancelling")),  # type: ignore[attr-defined]
                    true() if force else free,
                )
                .values(worker_id=worker_id, lease_until=stamp + lease_seconds)
            )
            return result.rowcount == 1

    def renew(self, run_ids: list[str], worker_id: str, lease_seconds: int) -> dict[str, str]:
        """Extends this worker's leases; returns the current status of each run (to notice cancels)."""
        if not run_ids:
            return {}
        with self.db.session() as s:
            s.exec(  # type: ignore[call-overload]
                update(RunRow)
                .where(RunRow.id.in_(run_ids), RunRow.worker_id == worker_id)  # type: ignore[attr-defined]
                .values(lease_until=time.time() + lease_seconds)
            )
            rows = s.exec(select(RunRow.id, RunRow.status).where(RunRow.id.in_(run_ids)))  # type: ignore[attr-defined]
            return {run_id: status for run_id, status in rows}

    def orphans(self) -> list[RunRow]:
        """Runs that should be executing but whose worker's lease ran out (a crash or a restart)."""
        with self.db.session() as s:
            stmt = select(RunRow).where(
                RunRow.status.in_(("queued", "in_progress", "cancelling")),  # type: ignore[attr-defined]
                or_(RunRow.lease_until == None, RunRow.lease_until < time.time()),  # noqa: E711
            )
            return list(s.exec(stmt))

    def leased_runs(self) -> list[RunRow]:
        with self.db.session() as s:
            stmt = select(RunRow).where(
                RunRow.status.in_(("queued", "in_progress", "cancelling")),  # type: ignore[attr-defined]
                RunRow.worker_id != None,  # noqa: E711
            )
            return list(s.exec(stmt))

    def overdue(self) -> list[str]:
        with self.db.session() as s:
            stmt = select(RunRow.id).where(
                RunRow.status.in_(("queued", "in_progress", "requires_action", "cancelling")),  # type: ignore[attr-defined]
                RunRow.expires_at != None,  # noqa: E711
                RunRow.expires_at <= now(),
            )
            return list(s.exec(stmt))

    # ------------------------------------------------------------------------------------- reading
    def run(self, run_id: str) -> RunRow:
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None, run_id
            return row

    def history(self, run: RunRow) -> list[MessageRow]:
        """The thread's messages in order, without the ones this run is writing."""
        with self.db.session() as s:
            stmt = (
                select(MessageRow)
                .where(MessageRow.thread_id == run.thread_id)
                .order_by(MessageRow.created_at, MessageRow.id)
            )
            return [m for m in s.exec(stmt) if not (m.run_id == run.id and m.status == "in_progress")]

    def steps(self, run_id: str) -> list[StepRow]:
        with self.db.session() as s:
            stmt = select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.created_at, StepRow.id)
            return list(s.exec(stmt))

    def tool_resources(self, run: RunRow) -> tuple[dict[str, Any], dict[str, Any]]:
        """(assistant's tool_resources, thread's tool_resources, or the run's override)."""
        with self.db.session() as s:
            assistant = s.get(AssistantRow, run.assistant_id)
            thread = s.get(ThreadRow, run.thread_id)
            thread_res = run.tool_resources or (thread.tool_resources if thread else None) or {}
            return (assistant.tool_resources if assistant else None) or {}, thread_res

    # ----------------------------------------------------------------------------------- run status
    def _publish_run(self, row: RunRow) -> None:
        self.bus.publish(row.id, f"thread.run.{row.status}", run_object(row))

    def start(self, run_id: str) -> RunRow:
        """`queued` becomes `in_progress` (and publishes it) when generation starts; any other status is
        left as it is and nothing is published."""
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            started = row.status == "queued"
            if started:
                row.status = "in_progress"
                row.started_at = row.started_at or now()
                s.add(row)
        if started:
            self._publish_run(row)
        return row

    def requeue_unstarted(self, run_id: str) -> bool:
        """Gives a run that has not started back to the queue, free for any worker to claim: a `queued` run
        loses its lease, an `in_progress` run with no step yet (its worker stopped before the run produced
        anything) becomes `queued` again. False, changing nothing, for any other run."""
        free = {"worker_id": None, "lease_until": None}
        with self.db.session() as s:
            has_step = select(StepRow.id).where(StepRow.run_id == run_id).exists()
            back = s.exec(  # type: ignore[call-overload]
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == "in_progress", ~has_step)
                .values(status="queued", started_at=None, **free)
            ).rowcount
            waiting = s.exec(  # type: ignore[call-overload]
                update(RunRow).where(RunRow.id == run_id, RunRow.status == "queued").values(**free)
            ).rowcount
            row = s.get(RunRow, run_id)
        if back and row is not None:
            self._publish_run(row)
        return bool(back or waiting)

    def require_action(self, run_id: str, calls: list[dict[str, Any]]) -> None:
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            row.status = "requires_action"
            row.required_action = {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": calls},
            }
            row.worker_id, row.lease_until = None, None
            s.add(row)
        self._publish_run(row)

    def add_tool_round(self, run_id: str) -> int:
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            row.tool_rounds += 1
            s.add(row)
            return row.tool_rounds

    def finish(
        self,
        run_id: str,
        status: str,
        last_error: dict[str, str] | None = None,
        incomplete_details: dict[str, str] | None = None,
    ) -> bool:
        """Ends the run: every open step and message is closed to match, usage is summed from the steps.
        Returns False (and changes nothing) when the run had already ended."""
        stamp = now()
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            if row.status in TERMINAL:
                return False
            closed_steps, closed_messages = [], []
            step_status = "completed" if status in ("completed", "incomplete") else status
            for step in s.exec(
                select(StepRow).where(StepRow.run_id == run_id, StepRow.status == "in_progress")
            ):
                step.status = step_status if step_status in STAMP else "cancelled"
                setattr(step, STAMP.get(step.status, "cancelled_at"), stamp)
                step.usage = step.usage or (step.engine_state or {}).get("usage")
                if status == "failed":
                    step.last_error = last_error
                s.add(step)
                closed_steps.append(step)
            for message in s.exec(
                select(MessageRow).where(MessageRow.run_id == run_id, MessageRow.status == "in_progress")
            ):
                message.status, message.incomplete_at = "incomplete", stamp
                message.incomplete_details = {"reason": MESSAGE_REASON.get(status, "max_tokens")}
                s.add(message)
                closed_messages.append(message)
            usage = _sum_usage(s.exec(select(StepRow.usage).where(StepRow.run_id == run_id)))
            row.status = status
            row.usage = usage
            row.expires_at = None
            row.required_action = None
            row.last_error = last_error
            row.incomplete_details = incomplete_details
            row.worker_id, row.lease_until = None, None
            if RUN_STAMP.get(status):
                setattr(row, RUN_STAMP[status], stamp)
            s.add(row)
        for message in closed_messages:
            self.bus.publish(run_id, "thread.message.incomplete", message_object(message))
        for step in closed_steps:
            self.bus.publish(run_id, f"thread.run.step.{step.status}", step_object(step))
        self._publish_run(row)
        return True

    # ------------------------------------------------------------------------------------------- steps
    def open_step(self, run: RunRow, kind: str, details: dict[str, Any]) -> StepRow:
        oid = new_id(STEP_PREFIX)
        step = StepRow(
            id=oid,
            project=run.project,
            run_id=run.id,
            thread_id=run.thread_id,
            assistant_id=run.assistant_id,
            created_at=created_at_of(oid, STEP_PREFIX),
            type=kind,
            status="in_progress",
            step_details=details,
        )
        with self.db.session() as s:
            s.add(step)
        obj = step_object(step)
        self.bus.publish(run.id, "thread.run.step.created", obj)
        self.bus.publish(run.id, "thread.run.step.in_progress", obj)
        return step

    def step_delta(self, step: StepRow, delta: dict[str, Any]) -> None:
        self.bus.publish(
            step.run_id,
            "thread.run.step.delta",
            {"id": step.id, "object": "thread.run.step.delta", "delta": delta},
        )

    def save_step(
        self,
        step: StepRow,
        details: dict[str, Any],
        status: str | None = None,
        usage: dict[str, int] | None = None,
        state: dict[str, Any] | None = None,
    ) -> StepRow:
        """Writes a step's details; with `status` it ends the step; `state` is the engine's private note."""
        with self.db.session() as s:
            row = s.get(StepRow, step.id)
            assert row is not None
            row.step_details = details
            if usage is not None:
                row.usage = usage
            if state is not None:
                row.engine_state = state
            if status is not None:
                row.status = status
                setattr(row, STAMP[status], now())
            s.add(row)
        if status is not None:
            self.bus.publish(step.run_id, f"thread.run.step.{status}", step_object(row))
        return row

    # ---------------------------------------------------------------------------------------- messages
    def open_message(self, run: RunRow, message_id: str) -> MessageRow:
        message = MessageRow(
            id=message_id,
            project=run.project,
            thread_id=run.thread_id,
            created_at=created_at_of(message_id, MESSAGE_PREFIX),
            role="assistant",
            content=[],
            status="in_progress",
            assistant_id=run.assistant_id,
            run_id=run.id,
            attachments=None,
        )
        with self.db.session() as s:
            s.add(message)
        obj = message_object(message)
        self.bus.publish(run.id, "thread.message.created", obj)
        self.bus.publish(run.id, "thread.message.in_progress", obj)
        return message

    def text_delta(
        self, message: MessageRow, index: int, value: str, annotations: list[dict[str, Any]] | None = None
    ) -> None:
        text: dict[str, Any] = {"value": value}
        if annotations:
            text["annotations"] = annotations
        delta = {"content": [{"index": index, "type": "text", "text": text}]}
        self.bus.publish(
            message.run_id or "",
            "thread.message.delta",
            {"id": message.id, "object": "thread.message.delta", "delta": delta},
        )

    def part_delta(self, message: MessageRow, part: dict[str, Any]) -> None:
        self.bus.publish(
            message.run_id or "",
            "thread.message.delta",
            {"id": message.id, "object": "thread.message.delta", "delta": {"content": [part]}},
        )

    def save_message(
        self,
        message: MessageRow,
        content: list[dict[str, Any]],
        status: str | None = None,
        incomplete_reason: str | None = None,
    ) -> MessageRow:
        with self.db.session() as s:
            row = s.get(MessageRow, message.id)
            assert row is not None
            row.content = content
            if status == "completed":
                row.status, row.completed_at = status, now()
            elif status == "incomplete":
                row.status, row.incomplete_at = status, now()
                row.incomplete_details = {"reason": incomplete_reason or "max_tokens"}
            s.add(row)
        if status is not None:
            self.bus.publish(message.run_id or "", f"thread.message.{status}", message_object(row))
        return row


def new_message_id() -> str:
    return new_id(MESSAGE_PREFIX)


def _sum_usage(items: Any) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for usage in items:
        for key in total:
            total[key] += (usage or {}).get(key, 0)
    return total


__all__ = ["RunStore", "new_message_id", "text_part"]
