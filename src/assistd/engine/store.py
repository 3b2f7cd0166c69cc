"""What a run writes while it executes: its status, steps and messages, one short transaction each, with
its events. Every write goes through the work queue's fenced transaction (engine/claims.py `ClaimQueue.tx`):
a worker that lost the run writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlmodel import Session, select

from assistd.engine.claims import ClaimQueue, JobEnd, LostClaim
from assistd.engine.events import Event
from assistd.ids import created_at_of, new_id, now
from assistd.protocol.messages import text_part
from assistd.protocol.runs import TERMINAL
from assistd.services.messages import PREFIX as MESSAGE_PREFIX
from assistd.services.messages import to_object as message_object
from assistd.services.run_views import run_object, step_object
from assistd.services.runs import STEP_PREFIX
from assistd.storage.assistants import AssistantRow
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
T = TypeVar("T")


class RunStore:
    def __init__(self, queue: ClaimQueue) -> None:
        self.queue = queue
        self.db = queue.db
        self.bus = queue.bus

    def _tx(self, run_id: str, body: Callable[[Session, list[Event]], T], guard: str = "claim") -> T | None:
        return self.queue.tx(run_id, body, guard)

    def reasoning_delta(self, run: RunRow, text: str) -> None:
        """A run streams no reasoning: it is kept with the step (engine_state) once the reply is read."""

    def calls_written(self, step: StepRow) -> None:
        """A run's step streams its calls' arguments as deltas: nothing more to say before they run."""

    def tool_calls_left(self, steps: list[StepRow]) -> int | None:
        """A run has no limit on its tool calls beyond max_tool_rounds (tool_rules.check_rounds)."""
        return None

    def generated(self, result: Any, reasoning_tokens: int = 0) -> None:
        """A run's usage is counted per step (save_step)."""

    def last_user_text(self, run: RunRow) -> str:
        """The text of the thread's last user message (the automatic file search's query)."""
        for message in reversed(self.history(run)):
            texts = [p["text"]["value"] for p in message.content or [] if p["type"] == "text"]
            if message.role == "user" and texts:
                return "\n".join(texts)
        return ""

    def holds(self, run_id: str) -> bool:
        return self.queue.holds(run_id)

    def release(self, run_id: str) -> None:
        self.queue.release(run_id)

    # ------------------------------------------------------------------------------------- reading
    def _read(self, what: str, body: Callable[[Session], T]) -> T:
        return self.queue.read(what, body)

    def run(self, run_id: str) -> RunRow:
        def body(s: Session) -> RunRow:
            row = s.get(RunRow, run_id)
            if row is None:  # deleted with its thread
                raise LostClaim(run_id)
            return row

        return self._read(f"reading run {run_id}", body)

    def history(self, run: RunRow) -> list[MessageRow]:
        """The thread's messages in order, without the ones this run is writing."""
        stmt = (
            select(MessageRow)
            .where(MessageRow.thread_id == run.thread_id)
            .order_by(MessageRow.created_at, MessageRow.id)  # type: ignore[arg-type]
        )
        return self._read(
            f"reading the thread of run {run.id}",
            lambda s: [m for m in s.exec(stmt) if not (m.run_id == run.id and m.status == "in_progress")],
        )

    def steps(self, run_id: str) -> list[StepRow]:
        stmt = select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.created_at, StepRow.id)  # type: ignore[arg-type]
        return self._read(f"reading the steps of run {run_id}", lambda s: list(s.exec(stmt)))

    def tool_resources(self, run: RunRow) -> tuple[dict[str, Any], dict[str, Any]]:
        """(assistant's tool_resources, thread's tool_resources, or the run's override)."""

        def body(s: Session) -> tuple[dict[str, Any], dict[str, Any]]:
            assistant = s.get(AssistantRow, run.assistant_id)
            thread = s.get(ThreadRow, run.thread_id)
            thread_res = run.tool_resources or (thread.tool_resources if thread else None) or {}
            return (assistant.tool_resources if assistant else None) or {}, thread_res

        return self._read(f"reading the tool resources of run {run.id}", body)

    # ----------------------------------------------------------------------------------- run status
    @staticmethod
    def _run_event(row: RunRow) -> Event:
        return Event(f"thread.run.{row.status}", run_object(row))

    def start(self, run_id: str) -> RunRow:
        """`queued` becomes `in_progress` (and publishes it) when generation starts; any other status is
        left as it is and nothing is published."""

        def body(s: Session, events: list[Event]) -> RunRow:
            row = s.get(RunRow, run_id)
            if row is None:
                raise LostClaim(run_id)
            if row.status == "queued":
                row.status = "in_progress"
                row.started_at = row.started_at or now()
                s.add(row)
                s.flush()
                events.append(self._run_event(row))
            return row

        return self._tx(run_id, body)  # type: ignore[return-value]

    def requeue_unstarted(self, run_id: str, holder: bool = True) -> bool:
        """Gives a run that has not started back to the queue (ClaimQueue.requeue_unstarted): an
        `in_progress` run counts as started once it has a step."""
        has_step = select(StepRow.id).where(StepRow.run_id == run_id).exists()
        return self.queue.requeue_unstarted(run_id, has_step, lambda _s, row: self._run_event(row), holder)

    def require_action(self, run_id: str, calls: list[dict[str, Any]]) -> None:
        """Parks the run for the client's tool outputs (RunStopped when it was cancelled meanwhile)."""

        def body(s: Session, events: list[Event]) -> bool:
            row = s.get(RunRow, run_id)
            assert row is not None
            if row.status == "cancelling":  # cancelled as it was about to park: it ends cancelled instead
                return False
            row.status = "requires_action"
            row.required_action = {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": calls},
            }
            row.worker_id, row.lease_until = None, None
            s.add(row)
            s.flush()
            events.append(self._run_event(row))
            return True

        if not self._tx(run_id, body):
            from assistd.engine.stopping import RunStopped  # (stopping imports this module)

            raise RunStopped("cancelled")
        self.release(run_id)

    def add_tool_round(self, run_id: str) -> int:
        def body(s: Session, _events: list[Event]) -> int:
            row = s.get(RunRow, run_id)
            assert row is not None
            row.tool_rounds += 1
            s.add(row)
            return row.tool_rounds

        return self._tx(run_id, body)  # type: ignore[return-value]

    def finish(
        self,
        run_id: str,
        status: str,
        last_error: dict[str, str] | None = None,
        incomplete_details: dict[str, str] | None = None,
    ) -> bool:
        """Ends the run: every open step and message is closed to match, usage is summed from the steps.
        Returns False (and changes nothing) when the run had already ended, or when another worker holds
        it (a process that does not hold a run only ends it while nobody does)."""
        stamp = now()
        ended: list[JobEnd] = []

        def body(s: Session, events: list[Event]) -> bool:
            row = s.get(RunRow, run_id)
            if row is None or row.status in TERMINAL:
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
            s.flush()
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
            events.extend(Event("thread.message.incomplete", message_object(m)) for m in closed_messages)
            events.extend(Event(f"thread.run.step.{st.status}", step_object(st)) for st in closed_steps)
            events.append(self._run_event(row))
            ended[:] = [JobEnd.of(row)]
            return True

        done = self._tx(run_id, body, guard="claim" if self.holds(run_id) else "unheld")
        self.release(run_id)
        if done:
            self.queue.report_end(ended[0])
        return bool(done)

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

        def body(s: Session, events: list[Event]) -> None:
            if s.get(StepRow, oid) is None:  # a retry after a commit whose answer was lost adds nothing
                s.add(StepRow.model_validate(step.model_dump()))
            obj = step_object(step)
            events.append(Event("thread.run.step.created", obj))
            events.append(Event("thread.run.step.in_progress", obj))

        self._tx(run.id, body)
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

        def body(s: Session, events: list[Event]) -> StepRow:
            row = s.get(StepRow, step.id)
            if row is None:
                raise LostClaim(step.run_id)
            row.step_details = details
            if usage is not None:
                row.usage = usage
            if state is not None:
                row.engine_state = state
            if status is not None:
                row.status = status
                setattr(row, STAMP[status], now())
            s.add(row)
            s.flush()
            if status is not None:
                events.append(Event(f"thread.run.step.{status}", step_object(row)))
            return row

        return self._tx(step.run_id, body)  # type: ignore[return-value]

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

        def body(s: Session, events: list[Event]) -> None:
            if s.get(MessageRow, message_id) is None:
                s.add(MessageRow.model_validate(message.model_dump()))
            obj = message_object(message)
            events.append(Event("thread.message.created", obj))
            events.append(Event("thread.message.in_progress", obj))

        self._tx(run.id, body)
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
        def body(s: Session, events: list[Event]) -> MessageRow:
            row = s.get(MessageRow, message.id)
            if row is None:
                raise LostClaim(message.run_id or "")
            row.content = content
            if status == "completed":
                row.status, row.completed_at = status, now()
            elif status == "incomplete":
                row.status, row.incomplete_at = status, now()
                row.incomplete_details = {"reason": incomplete_reason or "max_tokens"}
            s.add(row)
            s.flush()
            if status is not None:
                events.append(Event(f"thread.message.{status}", message_object(row)))
            return row

        return self._tx(message.run_id or "", body)  # type: ignore[return-value]


def new_message_id() -> str:
    return new_id(MESSAGE_PREFIX)


def _sum_usage(items: Any) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for usage in items:
        for key in total:
            total[key] += (usage or {}).get(key, 0)
    return total


__all__ = ["LostClaim", "RunStore", "new_message_id", "text_part"]
