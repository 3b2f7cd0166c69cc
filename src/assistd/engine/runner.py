"""One job, from claim to its end or to `requires_action`: a run of the Assistants API, or a response of the
Responses API. Each turn of the loop (`TurnLoop`): build the prompt (prompt.py), ask the model and read its
reply (reply.py), record it (record.py) as the final message or as a tool_calls step, execute the step's
server-side tools (tool_step.py) and loop; tool_choice and the loop guards are in tool_rules.py, cancellation
and expiry in stopping.py.

The loop is the same for both APIs; what differs is what it writes through: a run's RunStore (steps and
messages, store.py) or a response's ResponseTape (items, responses/tape.py), which speak one vocabulary
(`open_step`, `step_delta`, `save_step`, `open_message`, `text_delta`, `save_message`, `require_action`,
`finish`...)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from assistd.config import ModelEntry, Settings
from assistd.engine.budget import Limit
from assistd.engine.context import PromptTooLong, TemplateRefused
from assistd.engine.images import CannotSee, ImageUnavailable
from assistd.engine.prompt import PromptBuilder
from assistd.engine.record import NoAnswer, Recorder, usage_of
from assistd.engine.reply import CallCut, Reply, ReplyReader
from assistd.engine.stopping import RunStopped, StopSignal, begin, check, stopping
from assistd.engine.store import LostClaim, RunStore
from assistd.engine.tool_rules import RoundLimit, check_rounds, repeats
from assistd.engine.tool_step import ToolStep
from assistd.engine.toolbox import Toolbox, ToolUnavailable, offered_functions
from assistd.llm.catalog import ModelCatalog
from assistd.llm.errors import EngineError, ModelLoadError
from assistd.llm.registry import LockAbandoned, ModelRegistry
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

__all__ = ["RunExecutor", "RunStopped", "StopSignal"]

log = logging.getLogger("assistd.engine")


class RunExecutor:
    """Executes runs (the engine's kind of job for ids `run_…`)."""

    def __init__(
        self,
        store: RunStore,
        registry: ModelRegistry,
        catalog: ModelCatalog,
        toolbox: Toolbox,
        settings: Settings,
    ) -> None:
        self.store = store
        self.loop = TurnLoop(store, registry, catalog, toolbox, settings)

    def execute(self, run_id: str, cancel: threading.Event) -> None:
        try:
            run = self.store.run(run_id, prefetch=True)  # with what its first turn reads
            execute(self.store, self.loop, run, cancel)
        finally:
            self.store.drop(run_id)

    def finish(
        self,
        job_id: str,
        status: str,
        last_error: dict[str, str] | None = None,
        incomplete_details: dict[str, str] | None = None,
    ) -> bool:
        return self.store.finish(job_id, status, last_error, incomplete_details)

    def requeue_unstarted(self, job_id: str, holder: bool = True) -> bool:
        return self.store.requeue_unstarted(job_id, holder)


def execute(store: Any, loop: TurnLoop, run: RunRow, cancel: threading.Event) -> None:
    """Executes a claimed job through `store` (a RunStore, or a response's tape) and ends it with the status
    its outcome calls for."""
    run_id = run.id
    if run.status == "cancelling":
        store.finish(run_id, "cancelled")
        return
    if run.status != "queued":
        return
    try:
        loop.run(run, cancel)
    except LostClaim:
        raise  # another worker has the run now: nothing more is written here
    except RunStopped as stop:
        if not getattr(cancel, "release", False):
            store.finish(run_id, stop.status)
    except CallCut as exc:
        log.info("%s incomplete: %s", run_id, exc)
        store.finish(run_id, "incomplete", incomplete_details={"reason": "max_completion_tokens"})
    except PromptTooLong as exc:
        if run.max_prompt_tokens:
            store.finish(run_id, "incomplete", incomplete_details={"reason": "max_prompt_tokens"})
        else:
            store.finish(
                run_id, "failed", {"code": "invalid_prompt", "message": f"The prompt is too long: {exc}."}
            )
    except TemplateRefused as exc:  # the conversation, not the server: a failed run, never a 500
        log.warning(
            "run %s: the chat template of model %s refused the conversation: %s", run_id, run.model, exc
        )
        message = f"The chat template of model '{run.model}' refused the conversation: {exc}"
        store.finish(run_id, "failed", {"code": "server_error", "message": message})
    except (CannotSee, ImageUnavailable) as exc:  # the conversation's images: the client's to fix
        store.finish(run_id, "failed", {"code": "invalid_prompt", "message": str(exc)})
    except RoundLimit as exc:
        store.finish(run_id, "failed", {"code": "server_error", "message": str(exc)})
    except ToolUnavailable as exc:
        store.finish(run_id, "failed", {"code": "server_error", "message": f"{exc}."})
    except NoAnswer as exc:
        store.finish(run_id, "failed", {"code": "server_error", "message": str(exc)})
    except (EngineError, ModelLoadError) as exc:  # an outage, not a bug: the message says where
        log.warning("run %s failed: %s", run_id, exc)
        store.finish(run_id, "failed", {"code": "server_error", "message": f"{exc}."})
    except Exception as exc:
        log.exception("run %s failed", run_id)
        store.finish(run_id, "failed", {"code": "server_error", "message": f"Execution failed: {exc}"})


class TurnLoop:
    """The turns of one job, written through `store`: a RunStore, or a response's tape."""

    metrics: Any = None  # the container's Metrics (assistd/metrics): each reply's timing

    def __init__(
        self,
        store: Any,
        registry: ModelRegistry,
        catalog: ModelCatalog,
        toolbox: Toolbox,
        settings: Settings,
    ) -> None:
        self.store = store
        self.registry = registry
        self.catalog = catalog
        self.toolbox = toolbox
        self.settings = settings
        self.prompts = PromptBuilder(toolbox.files, settings, toolbox.images)
        self.replies = ReplyReader(store, settings)
        self.recorder = Recorder(store, settings)
        self.tools = ToolStep(store, toolbox, self.recorder)

    def run(self, run: RunRow, cancel: threading.Event) -> None:
        entry = self.catalog.require(run.model)
        tools = self.tools.prepare(run, entry, cancel)
        while True:
            check(run, cancel)
            history = self.store.history(run)
            steps = self.store.steps(run.id)
            functions = offered_functions(run, entry, bool(tools.store_ids))
            left = self.store.tool_calls_left(steps)  # a response's max_tool_calls
            if left is not None and left <= 0:
                functions = []  # no more calls: the model answers
            reply, limit = self._ask(run, entry, history, steps, functions, cancel)
            if reply.calls and reply.sink is not None:
                self.recorder.close_preamble(reply.sink)
            if reply.calls and repeats(reply.calls, steps):
                # The model asks again for what this run already called and got back (small models loop
                # so): it answers with those results instead, without tools.
                reply, limit = self._ask(run, entry, history, steps, [], cancel)
            if not reply.calls:
                self.recorder.final_message(run, reply, tools.sources, steps, limit)
                return
            step, records = self.recorder.open_tool_calls(run, reply.calls)
            state = self.tools.execute(run, tools, step, records, reply.calls, history, cancel)
            if reply.reasoning:  # kept with the step (the run inspector; the family's tool loop)
                state["reasoning"] = reply.reasoning
            check_rounds(self.store.add_tool_round(run.id), self.settings.max_tool_rounds)
            if self.recorder.close_tool_calls(run, step, records, state, usage_of(reply.result)):
                return  # parked in requires_action

    def _ask(
        self,
        run: RunRow,
        entry: ModelEntry,
        history: list[MessageRow],
        steps: list[StepRow],
        functions: list[dict],
        cancel: threading.Event,
    ) -> tuple[Reply, Limit]:
        """One model turn: wait for the model (the run starts once it has it), build the prompt, generate
        and read the reply; with the limit that bounded the reply's length (budget.py)."""
        stop = stopping(run, cancel)
        try:
            with self.registry.use(run.model, abandon=stop) as backend:
                begin(self.store, run, cancel)
                clock = self.metrics.reply(run) if self.metrics is not None else None
                check(run, cancel)
                turn = self.prompts.build(backend, run, entry, history, steps, functions)
                try:
                    reader = clock.watch(backend) if clock is not None else backend
                    reply = self.replies.ask(reader, turn, run, functions, stop)
                except CallCut as cut:  # its tokens count all the same
                    self.store.generated(cut.result)
                    raise
                if clock is not None:
                    clock.done(reply.result.completion_tokens)
                thought = backend.count_tokens(reply.reasoning) if reply.reasoning else 0
                self.store.generated(reply.result, thought)
                return reply, turn.limit
        except LockAbandoned:
            check(run, cancel)
            raise
