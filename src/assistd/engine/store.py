"""What a run writes while it executes: its status, steps and messages, one short transaction each, with
its events. Every write goes through the work queue's fenced transaction (engine/claims.py `ClaimQueue.tx`):
a worker that lost the run writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, inspect, update
from sqlalchemy.dialects import postgresql, sqlite
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
from assistd.storage.columns import by_id
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


Body = Callable[[Session, list[Event]], Any]

_CONTENT = (
    update(MessageRow.__table__)  # type: ignore[attr-defined]
    .where(MessageRow.__table__.c.id == bindparam("message"))  # type: ignore[attr-defined]
    .values(content=bindparam("parts"))
)


class RunStore:
    def __init__(self, queue: ClaimQueue) -> None:
        self.queue = queue
        self.db = queue.db
        self.bus = queue.bus
        self._prefetched: dict[str, dict[str, Any]] = {}  # by run: what its first turn reads (`run`)
        dialect = postgresql if self.db.is_postgres else sqlite
        # a row inserted once: a retry after a commit whose answer was lost inserts nothing
        self._insert_once = {
            table: dialect.insert(table.__table__).on_conflict_do_nothing() for table in (StepRow, MessageRow)
        }

    def _add_once(self, s: Session, row: Any) -> None:
        s.connection().execute(self._insert_once[type(row)], _column_values(row))

    def _tx(self, run_id: str, body: Callable[[Session, list[Event]], T], guard: str = "claim") -> T | None:
        self.drop(run_id)  # what was read ahead may change now
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
        self.drop(run_id)
        self.queue.release(run_id)

    # ------------------------------------------------------------------------------------- reading
    def _read(self, what: str, body: Callable[[Session], T]) -> T:
        return self.queue.read(what, body)

    def run(self, run_id: str, prefetch: bool = False) -> RunRow:
        """The run's row. With `prefetch` (an execution begins), what its first turn reads (its tool
        resources, its thread's messages, its steps) is read in the same transaction and kept until the run
        writes anything or `drop` is called: one read where there were four."""

        def body(s: Session) -> RunRow:
            row = s.exec(by_id(RunRow), params={"id": run_id}).first()
            if row is None:  # deleted with its thread
                raise LostClaim(run_id)
            if prefetch:
                self._prefetched[run_id] = {
                    "tool_resources": self._tool_resources(s, row),
                    "history": self._history(s, row),
                    "steps": self._steps(s, run_id),
                }
            return row

        return self._read(f"reading run {run_id}", body)

    def drop(self, run_id: str) -> None:
        """Forgets what `run(prefetch=True)` read for the run."""
        self._prefetched.pop(run_id, None)

    def _kept(self, run_id: str, what: str) -> Any:
        kept = self._prefetched.get(run_id)
        return kept.get(what) if kept is not None else None

    def history(self, run: RunRow) -> list[MessageRow]:
        """The thread's messages in order, without the ones this run is writing."""
        kept = self._kept(run.id, "history")
        if kept is not None:
            return list(kept)
        return self._read(f"reading the thread of run {run.id}", lambda s: self._history(s, run))

    @staticmethod
    def _history(s: Session, run: RunRow) -> list[MessageRow]:
        messages = s.exec(_THREAD_MESSAGES, params={"thread_id": run.thread_id})
        return [m for m in messages if not (m.run_id == run.id and m.status == "in_progress")]

    def steps(self, run_id: str) -> list[StepRow]:
        kept = self._kept(run_id, "steps")
        if kept is not None:
            return list(kept)
        return self._read(f"reading the steps of run {run_id}", lambda s: self._steps(s, run_id))

    @staticmethod
    def _steps(s: Session, run_id: str) -> list[StepRow]:
        return list(s.exec(_STEPS_IN_ORDER, params={"run_id": run_id}))

    def tool_resources(self, run: RunRow) -> tuple[dict[str, Any], dict[str, Any]]:
        """(assistant's tool_resources, thread's tool_resources, or the run's override)."""
        kept = self._kept(run.id, "tool_resources")
        if kept is not None:
            return kept
        return self._read(
            f"reading the tool resources of run {run.id}", lambda s: self._tool_resources(s, run)
        )

    @staticmethod
    def _tool_resources(s: Session, run: RunRow) -> tuple[dict[str, Any], dict[str, Any]]:
        assistant = s.exec(by_id(AssistantRow), params={"id": run.assistant_id}).first()
        thread = s.exec(by_id(ThreadRow), params={"id": run.thread_id}).first()
        thread_res = run.tool_resources or (thread.tool_resources if thread else None) or {}
        return (assistant.tool_resources if assistant else None) or {}, thread_res

    # ----------------------------------------------------------------------------------- run status
    @staticmethod
    def _run_event(row: RunRow) -> Event:
        return Event(f"thread.run.{row.status}", run_object(row))

    def start(self, run_id: str) -> RunRow:
        """`queued` becomes `in_progress` (and publishes it) when generation starts; any other status is
        left as it is and nothing is published."""

        def body(s: Session, events: list[Event]) -> RunRow:
            row = _write(s, RunRow, run_id, {"status": "in_progress", "started_at": now()}, only="queued")
            if row is not None:
                events.append(self._run_event(row))
                return row
            row = s.get(RunRow, run_id)
            if row is None:
                raise LostClaim(run_id)
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
        done = self._tx(
            run_id,
            self._finish_body(run_id, status, last_error, incomplete_details),
            guard="claim" if self.holds(run_id) else "unheld",
        )
        self.release(run_id)  # (ended or not: this process writes nothing more for it)
        return bool(done)

    def _finish_body(
        self,
        run_id: str,
        status: str,
        last_error: dict[str, str] | None,
        incomplete_details: dict[str, str] | None,
    ) -> Body:
        stamp = now()

        def body(s: Session, events: list[Event]) -> bool:
            steps = list(s.exec(_RUN_STEPS, params={"run_id": run_id}))
            step_status = "completed" if status in ("completed", "incomplete") else status
            open_steps = [st for st in steps if st.status == "in_progress"]
            # an open step is closed (below) with the usage its engine noted: it counts in the run's
            usage = [
                st.usage or (st.engine_state or {}).get("usage") if st in open_steps else st.usage
                for st in steps
            ]
            values = {
                "status": status,
                "usage": _sum_usage(usage),
                "expires_at": None,
                "required_action": None,
                "last_error": last_error,
                "incomplete_details": incomplete_details,
                "worker_id": None,
                "lease_until": None,
            }
            if RUN_STAMP.get(status):
                values[RUN_STAMP[status]] = stamp
            row = _write(s, RunRow, run_id, values, only="unended")
            if row is None:  # gone, or already ended: nothing changes
                return False
            for step in open_steps:
                step.status = step_status if step_status in STAMP else "cancelled"
                setattr(step, STAMP.get(step.status, "cancelled_at"), stamp)
                step.usage = step.usage or (step.engine_state or {}).get("usage")
                if status == "failed":
                    step.last_error = last_error
                s.add(step)
            closed_messages = list(s.exec(_OPEN_MESSAGES, params={"run_id": run_id}))
            for message in closed_messages:
                message.status, message.incomplete_at = "incomplete", stamp
                message.incomplete_details = {"reason": MESSAGE_REASON.get(status, "max_tokens")}
                s.add(message)
            events.extend(Event("thread.message.incomplete", message_object(m)) for m in closed_messages)
            events.extend(Event(f"thread.run.step.{st.status}", step_object(st)) for st in open_steps)
            events.append(self._run_event(row))
            self.queue.report_end_at_commit(s, JobEnd.of(row))
            return True

        return body

    def close_reply(
        self,
        message: MessageRow,
        content: list[dict[str, Any]],
        step: StepRow,
        details: dict[str, Any],
        usage: dict[str, int],
        state: dict[str, Any] | None,
        status: str,
        incomplete_details: dict[str, str] | None = None,
    ) -> bool:
        """The reply's end in one transaction: its message (`completed`, or `incomplete` when a token cap cut
        it: `status`), its message_creation step completed, and the run ended with `status`. False when the
        run had ended meanwhile (a cancel that came first)."""
        run_id = message.run_id or ""
        bodies = [
            self._message_body(message, content, status, "max_tokens"),
            self._step_body(step, details, "completed", usage, state),
            self._finish_body(run_id, status, None, incomplete_details),
        ]
        done = self._tx(run_id, lambda s, events: [b(s, events) for b in bodies][-1])
        self.release(run_id)
        return bool(done)

    # ------------------------------------------------------------------------------------------- steps
    def open_step(self, run: RunRow, kind: str, details: dict[str, Any]) -> StepRow:
        step = _new_step(run, kind, details)
        self._tx(run.id, self._open_step_body(step))
        return step

    def open_reply(self, run: RunRow, message_id: str, details: dict[str, Any]) -> tuple[StepRow, MessageRow]:
        """A message_creation step and its message, opened in one transaction (their events in that order)."""
        step = _new_step(run, "message_creation", details)
        message = _new_message(run, message_id)
        bodies = (self._open_step_body(step), self._open_message_body(message))
        self._tx(run.id, lambda s, events: [b(s, events) for b in bodies])
        return step, message

    def _open_step_body(self, step: StepRow) -> Body:
        def body(s: Session, events: list[Event]) -> None:
            self._add_once(s, step)
            obj = step_object(step)
            events.append(Event("thread.run.step.created", obj))
            events.append(Event("thread.run.step.in_progress", obj))

        return body

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
        return self._tx(step.run_id, self._step_body(step, details, status, usage, state))  # type: ignore[return-value]

    @staticmethod
    def _step_body(
        step: StepRow,
        details: dict[str, Any],
        status: str | None,
        usage: dict[str, int] | None,
        state: dict[str, Any] | None,
    ) -> Body:
        values: dict[str, Any] = {"step_details": details}
        if usage is not None:
            values["usage"] = usage
        if state is not None:
            values["engine_state"] = state
        if status is not None:
            values["status"] = status
            values[STAMP[status]] = now()

        def body(s: Session, events: list[Event]) -> StepRow:
            row = _write(s, StepRow, step.id, values)
            if row is None:
                raise LostClaim(step.run_id)
            if status is not None:
                events.append(Event(f"thread.run.step.{status}", step_object(row)))
            return row

        return body

    # ---------------------------------------------------------------------------------------- messages
    def open_message(self, run: RunRow, message_id: str) -> MessageRow:
        message = _new_message(run, message_id)
        self._tx(run.id, self._open_message_body(message))
        return message

    def _open_message_body(self, message: MessageRow) -> Body:
        def body(s: Session, events: list[Event]) -> None:
            self._add_once(s, message)
            obj = message_object(message)
            events.append(Event("thread.message.created", obj))
            events.append(Event("thread.message.in_progress", obj))

        return body

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
    ) -> MessageRow | None:
        """Writes a message's content; with `status` (completed, incomplete) it ends the message and returns
        its row (without: the content alone, one statement, and None)."""
        return self._tx(message.run_id or "", self._message_body(message, content, status, incomplete_reason))

    @staticmethod
    def _message_body(
        message: MessageRow, content: list[dict[str, Any]], status: str | None, incomplete_reason: str | None
    ) -> Body:
        values: dict[str, Any] = {"content": content}
        if status == "completed":
            values.update(status=status, completed_at=now())
        elif status == "incomplete":
            values.update(status=status, incomplete_at=now())
            values["incomplete_details"] = {"reason": incomplete_reason or "max_tokens"}

        def body(s: Session, events: list[Event]) -> MessageRow | None:
            if status is None:  # the streamed text so far: no event, no row to read back
                if not s.connection().execute(_CONTENT, {"message": message.id, "parts": content}).rowcount:
                    raise LostClaim(message.run_id or "")
                return None
            row = _write(s, MessageRow, message.id, values)
            if row is None:
                raise LostClaim(message.run_id or "")
            events.append(Event(f"thread.message.{status}", message_object(row)))
            return row

        return body


def _new_step(run: RunRow, kind: str, details: dict[str, Any]) -> StepRow:
    oid = new_id(STEP_PREFIX)
    return StepRow(
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


def _new_message(run: RunRow, message_id: str) -> MessageRow:
    return MessageRow(
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


_COLUMNS: dict[type, list[tuple[str, str]]] = {}
_WRITES: dict[tuple[Any, ...], Any] = {}


# Built once, with a bound parameter (a statement's cache key is computed once). A run's first read:
_THREAD_MESSAGES = (
    select(MessageRow)
    .where(MessageRow.thread_id == bindparam("thread_id"))
    .order_by(MessageRow.created_at, MessageRow.id)  # type: ignore[arg-type]
)
_STEPS_IN_ORDER = (
    select(StepRow).where(StepRow.run_id == bindparam("run_id")).order_by(StepRow.created_at, StepRow.id)  # type: ignore[arg-type]
)
# A run's end:
_RUN_STEPS = select(StepRow).where(StepRow.run_id == bindparam("run_id"))
_OPEN_MESSAGES = select(MessageRow).where(
    MessageRow.run_id == bindparam("run_id"),
    MessageRow.status == "in_progress",  # type: ignore[arg-type]
)


def _write(s: Session, model: Any, row_id: str, values: dict[str, Any], only: str | None = None) -> Any:
    """UPDATE one row of `model`'s table (`values` by attribute name) and read it back in the same statement
    (RETURNING): the row as the model's attributes (a view, not a session's object), or None when no row
    matched. `only`: "queued" (a run's start: and `started_at` is kept if it was set), "unended" (a run's
    end). The statement is built once per shape: an ORM update returning the model costs twice as much."""
    key = (model, tuple(values), only)
    stmt = _WRITES.get(key)
    if stmt is None:
        t = model.__table__
        where = [t.c.id == bindparam("row_id")]
        if only == "queued":
            where.append(t.c.status == "queued")
        elif only == "unended":
            where.append(t.c.status.not_in(TERMINAL))
        sets: dict[Any, Any] = {t.c[k]: bindparam(f"v_{k}", type_=t.c[k].type) for k in values}
        if only == "queued" and "started_at" in values:
            sets[t.c.started_at] = func.coalesce(t.c.started_at, sets[t.c.started_at])
        stmt = _WRITES[key] = update(t).where(*where).values(sets).returning(*t.c)
    params = {f"v_{k}": v for k, v in values.items()}
    found = s.connection().execute(stmt, {"row_id": row_id, **params}).first()
    if found is None:
        return None
    names = _attribute_names(model)
    return SimpleNamespace(**{names[column]: value for column, value in found._mapping.items()})


_NAMES: dict[type, dict[str, str]] = {}


def _attribute_names(model: Any) -> dict[str, str]:
    """Column name -> attribute name (`metadata` is `meta`)."""
    names = _NAMES.get(model)
    if names is None:
        names = _NAMES[model] = {a.columns[0].name: a.key for a in inspect(model).column_attrs}
    return names


def _column_values(row: Any) -> dict[str, Any]:
    """A model's values by column name (`meta` is the column `metadata`), for a Core insert."""
    cls = type(row)
    names = _COLUMNS.get(cls)
    if names is None:
        names = _COLUMNS[cls] = [(a.key, a.columns[0].name) for a in inspect(cls).column_attrs]
    return {column: getattr(row, key) for key, column in names}


def new_message_id() -> str:
    return new_id(MESSAGE_PREFIX)


def _sum_usage(items: Any) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for usage in items:
        for key in total:
            total[key] += (usage or {}).get(key, 0)
    return total


__all__ = ["LostClaim", "RunStore", "new_message_id", "text_part"]
