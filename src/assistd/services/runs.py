"""Runs and run steps as resources: creation with every override, listing, cancel, tool outputs.
Executing a run is the engine's job (assistd.engine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import String, bindparam, cast, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from assistd.engine.images import holds_images
from assistd.errors import ActiveRunConflict, InvalidRequest, NotFound
from assistd.ids import created_at_of, new_id, now
from assistd.llm.catalog import ModelCatalog
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.runs import (
    ACTIVE,
    TERMINAL,
    RunCreate,
    RunObject,
    RunOptions,
    RunUpdate,
    StepObject,
    SubmitToolOutputs,
    ThreadAndRunCreate,
)
from assistd.protocol.tools import dump_tools
from assistd.services.assistants import AssistantService
from assistd.services.messages import MessageService
from assistd.services.pagination import paginate
from assistd.services.run_views import run_object, step_object
from assistd.services.threads import ThreadService, get_thread_row, lock_thread_row
from assistd.storage.assistants import AssistantRow
from assistd.storage.clock import read_now
from assistd.storage.columns import by_id
from assistd.storage.db import Database
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

PREFIX = "run_"
STEP_PREFIX = "step_"


# Statements of every run's creation, built once with bound parameters (one built per call costs its SQL
# cache key each time: a measurable share of a run's fixed cost, issue 20).
_ACTIVE_RUN = select(RunRow.id).where(
    RunRow.thread_id == bindparam("thread_id"),
    RunRow.status.in_(ACTIVE),  # type: ignore[attr-defined]
)
_CONTENT_TEXT = cast(MessageRow.content, String)
_IMAGE_CONTENTS = select(MessageRow.content).where(
    MessageRow.thread_id == bindparam("thread_id"),
    or_(_CONTENT_TEXT.like("%image_file%"), _CONTENT_TEXT.like("%image_url%")),
)


def active_run_id(s: Session, thread_id: str) -> str | None:
    return s.exec(_ACTIVE_RUN, params={"thread_id": thread_id}).first()


def thread_holds_images(s: Session, thread_id: str) -> bool:
    """Whether a message of the thread has an image part (a text match narrows, the parts decide)."""
    return any(holds_images(content) for content in s.exec(_IMAGE_CONTENTS, params={"thread_id": thread_id}))


class RunService:
    def __init__(
        self,
        db: Database,
        catalog: ModelCatalog,
        assistants: AssistantService,
        threads: ThreadService,
        messages: MessageService,
        expiry_seconds: int,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.assistants = assistants
        self.threads = threads
        self.messages = messages
        self.expiry_seconds = expiry_seconds
        # Called in the transaction that queues a run (s, run_id): wakes the workers when it commits.
        self.on_queued: Callable[[Session, str], None] | None = None
        # Called in the transaction that marks a run cancelling (s, run_id): tells the worker holding it.
        self.on_cancelling: Callable[[Session, str], None] | None = None
        # Whether a model's runs with images are refused at creation (it cannot see them, and the
        # operator's --vision-fallback is `refuse`); None: never checked here
        self.refuses_images: Callable[[str], bool] | None = None

    # ------------------------------------------------------------------------------------------ creation
    def create(self, project: str, thread_id: str, req: RunCreate) -> RunObject:
        self.messages.check_images(project, list(req.additional_messages or []), "additional_messages")
        try:
            with self.db.session() as s:
                thread = lock_thread_row(s, project, thread_id)  # concurrent creations take turns
                active = active_run_id(s, thread_id)
                if active:
                    raise _conflict(thread_id, active)
                row = self._new_run(s, project, thread_id, req)
                if req.additional_instructions:
                    row.instructions = f"{row.instructions}\n\n{req.additional_instructions}".strip()
                for i, message in enumerate(req.additional_messages or []):
                    self.messages.add_in(s, thread, message, param=f"additional_messages[{i}]")
                self._check_images(s, thread_id, row.model)
                s.add(row)
                s.flush()  # the partial unique index refuses a second active run here, whatever happened
                self._queued(s, row.id)
                return run_object(row)
        except IntegrityError as exc:
            if "ux_runs_active_thread" not in str(exc) and "runs.thread_id" not in str(exc):
                raise
            raise _conflict(thread_id, None) from None

    def _queued(self, s: Session, run_id: str) -> None:
        if self.on_queued is not None:
            self.on_queued(s, run_id)

    def create_thread_and_run(self, project: str, req: ThreadAndRunCreate) -> tuple[Any, RunObject]:
        from assistd.protocol.threads import ThreadCreate
        from assistd.services.threads import to_object as thread_object

        thread_req = req.thread or ThreadCreate()
        self.messages.check_images(project, list(thread_req.messages or []), "thread.messages")
        with self.db.session() as s:
            thread = self.threads.create_in(s, project, thread_req)
            row = self._new_run(s, project, thread.id, req)
            if req.tool_resources is not None:
                row.tool_resources = self.threads.resources.resolve(s, project, req.tool_resources)
            self._check_images(s, thread.id, row.model)
            s.add(row)
            s.flush()
            self._queued(s, row.id)
            return thread_object(thread), run_object(row)

    def _check_images(self, s: Session, thread_id: str, model: str) -> None:
        """A 400 naming the model when it cannot see the images the thread holds."""
        if self.refuses_images is None or not self.refuses_images(model):
            return
        if thread_holds_images(s, thread_id):
            raise InvalidRequest(
                f"The model '{model}' cannot see images, and the thread holds images. Use a vision model "
                "(a models-file entry with `mmproj`), or a thread without images.",
                param="model",
            )

    def _new_run(self, s: Session, project: str, thread_id: str, req: RunOptions) -> RunRow:
        assistant = s.exec(by_id(AssistantRow), params={"id": req.assistant_id}).first()
        if assistant is None or assistant.project != project:
            raise NotFound.of("assistant", req.assistant_id)
        given = req.provided()
        model = req.model or assistant.model
        self.catalog.require(model)
        tools = dump_tools(req.tools) if req.tools is not None else list(assistant.tools)
        if req.tools is not None:
            self.assistants.check_tools(tools)
        tool_choice = _tool_choice(req, tools)
        oid = new_id(PREFIX)
        created = created_at_of(oid, PREFIX)
        expires = int(read_now(s)) + self.expiry_seconds  # the database's clock, which every node shares
        return RunRow(
            id=oid,
            project=project,
            thread_id=thread_id,
            assistant_id=assistant.id,
            created_at=created,
            status="queued",
            expires_at=expires,
            model=model,
            instructions=req.instructions
            if "instructions" in given and req.instructions is not None
            else (assistant.instructions or ""),
            tools=tools,
            meta=req.metadata or {},
            temperature=req.temperature if req.temperature is not None else assistant.temperature,
            top_p=req.top_p if req.top_p is not None else assistant.top_p,
            max_prompt_tokens=req.max_prompt_tokens,
            max_completion_tokens=req.max_completion_tokens,
            truncation_strategy=req.truncation_strategy.model_dump()
            if req.truncation_strategy
            else {"type": "auto", "last_messages": None},
            tool_choice=tool_choice,
            parallel_tool_calls=req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
            response_format=self.assistants.check_response_format(req.response_format)
            if req.response_format is not None
            else (assistant.response_format or "auto"),
            reasoning_effort=getattr(req, "reasoning_effort", None) or assistant.reasoning_effort,
        )

    # ---------------------------------------------------------------------------------------- reading
    def _row(self, s: Session, project: str, thread_id: str, run_id: str) -> RunRow:
        get_thread_row(s, project, thread_id)
        row = s.get(RunRow, run_id)
        if row is None or row.thread_id != thread_id:
            raise NotFound.of("run", run_id)
        return row

    def get(self, project: str, thread_id: str, run_id: str) -> RunObject:
        with self.db.session() as s:
            return run_object(self._row(s, project, thread_id, run_id))

    def list(self, project: str, thread_id: str, page: PageQuery) -> ListPage[RunObject]:
        with self.db.session() as s:
            get_thread_row(s, project, thread_id)
            return paginate(s, RunRow, [RunRow.thread_id == thread_id], page, run_object, PREFIX)

    def update(self, project: str, thread_id: str, run_id: str, req: RunUpdate) -> RunObject:
        with self.db.session() as s:
            row = self._row(s, project, thread_id, run_id)
            if "metadata" in req.provided():
                row.meta = req.metadata or {}
            s.add(row)
            return run_object(row)

    def list_steps(
        self, project: str, thread_id: str, run_id: str, page: PageQuery, include: tuple[str, ...] = ()
    ) -> ListPage[StepObject]:
        with self.db.session() as s:
            self._row(s, project, thread_id, run_id)
            return paginate(
                s, StepRow, [StepRow.run_id == run_id], page, lambda r: step_object(r, include), STEP_PREFIX
            )

    def get_step(
        self, project: str, thread_id: str, run_id: str, step_id: str, include: tuple[str, ...] = ()
    ) -> StepObject:
        with self.db.session() as s:
            self._row(s, project, thread_id, run_id)
            row = s.get(StepRow, step_id)
            if row is None or row.run_id != run_id:
                raise NotFound.of("run step", step_id)
            return step_object(row, include)

    # ------------------------------------------------------------------------------------- transitions
    def request_cancel(self, project: str, thread_id: str, run_id: str) -> RunObject:
        """Marks the run `cancelling`; the engine then ends it (RunEngine.cancel), closing its steps and
        message, whether it is generating, queued or waiting for tool outputs."""
        with self.db.session() as s:
            row = self._row(s, project, thread_id, run_id)
            marked = s.execute(  # only if it has not ended meanwhile (a worker may be ending it now)
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status.not_in(TERMINAL))  # type: ignore[attr-defined]
                .values(status="cancelling")
                .execution_options(synchronize_session=False)
            ).rowcount
            s.refresh(row)
            if not marked:
                raise InvalidRequest(f"Cannot cancel run with status '{row.status}'.", param="run_id")
            if self.on_cancelling is not None:
                self.on_cancelling(s, run_id)
            return run_object(row)

    def submit_tool_outputs(
        self, project: str, thread_id: str, run_id: str, req: SubmitToolOutputs
    ) -> tuple[RunObject, StepObject, int]:
        """Completes the waiting step and queues the run again; also returns the run's event sequence number
        at that moment (a stream follows the run's events from there)."""
        with self.db.session() as s:
            row = self._row(s, project, thread_id, run_id)
            # Taken first, and only if it still waits (a cancel or the expiry may be ending it now).
            taken = s.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == "requires_action")  # type: ignore[arg-type]
                .values(status="queued", worker_id=None, lease_until=None)
                .execution_options(synchronize_session=False)
            ).rowcount
            s.refresh(row)
            if not taken or not row.required_action:
                raise InvalidRequest(
                    f"Runs in status '{row.status}' do not accept tool outputs.", param="run_id"
                )
            pending = [c["id"] for c in row.required_action["submit_tool_outputs"]["tool_calls"]]
            outputs = _match_outputs(pending, req)
            step = s.exec(
                select(StepRow).where(
                    StepRow.run_id == run_id, StepRow.type == "tool_calls", StepRow.status == "in_progress"
                )
            ).first()
            if step is None:
                raise InvalidRequest(f"Run {run_id} has no step waiting for tool outputs.", param="run_id")
            calls = []
            for call in step.step_details["tool_calls"]:
                if call.get("type") == "function" and call["id"] in outputs:
                    call = {**call, "function": {**call["function"], "output": outputs[call["id"]]}}
                calls.append(call)
            step.step_details = {**step.step_details, "tool_calls": calls}
            step.status, step.completed_at = "completed", now()
            step.usage = (step.engine_state or {}).get("usage")
            row.required_action = None  # back in the queue (status set above): any worker takes it
            s.add(step)
            s.add(row)
            s.flush()
            self._queued(s, run_id)
            return run_object(row), step_object(step), row.event_seq


def _conflict(thread_id: str, active: str | None) -> ActiveRunConflict:
    which = f" {active}" if active else ""
    return ActiveRunConflict(f"Thread {thread_id} already has an active run{which}.", param="thread_id")


def _match_outputs(pending: list[str], req: SubmitToolOutputs) -> dict[str, str]:
    outputs: dict[str, str] = {}
    for i, item in enumerate(req.tool_outputs):
        param = f"tool_outputs[{i}].tool_call_id"
        if item.tool_call_id not in pending:
            raise InvalidRequest(
                f"Invalid 'tool_outputs[{i}].tool_call_id': "
                f"no pending tool call with id '{item.tool_call_id}'. "
                f"Pending tool calls: {', '.join(pending)}.",
                param=param,
            )
        if item.tool_call_id in outputs:
            raise InvalidRequest(f"Duplicate output for tool call '{item.tool_call_id}'.", param=param)
        outputs[item.tool_call_id] = item.output
    missing = [call_id for call_id in pending if call_id not in outputs]
    if missing:
        raise InvalidRequest(
            f"Expected tool outputs for call_ids {pending}, got {list(outputs)}; missing {missing}.",
            param="tool_outputs",
        )
    return outputs


def _tool_choice(req: RunOptions, tools: list[dict[str, Any]]) -> Any:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice == "required" and not tools:
            raise InvalidRequest("tool_choice 'required' needs at least one tool.", param="tool_choice")
        return choice
    data = choice.model_dump()
    if data["type"] == "function":
        names = {t["function"]["name"] for t in tools if t["type"] == "function"}
        if data["function"]["name"] not in names:
            raise InvalidRequest(
                f"tool_choice names function '{data['function']['name']}', which is not among the tools.",
                param="tool_choice",
            )
    elif not any(t["type"] == data["type"] for t in tools):
        raise InvalidRequest(
            f"tool_choice names '{data['type']}', which is not among the tools.", param="tool_choice"
        )
    return data
