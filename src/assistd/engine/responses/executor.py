"""Executes responses (the engine's kind of job for ids `resp_…`): the response's conversation is read, its
job made (job.py), and the turn loop runs over the response's tape (tape.py), as a run's runs over its
RunStore (engine/runner.py)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import delete, exists, or_
from sqlmodel import Session

from assistd.config import Settings
from assistd.engine.claims import ClaimQueue, LostClaim
from assistd.engine.context import PromptTooLong, TemplateRefused
from assistd.engine.events import Event
from assistd.engine.images import CannotSee, ImageUnavailable
from assistd.engine.prompt import PromptBuilder
from assistd.engine.responses import events as ev
from assistd.engine.responses.history import chat_turns, system_texts
from assistd.engine.responses.job import job_of
from assistd.engine.responses.tape import TERMINAL, ResponseTape, finish_response
from assistd.engine.runner import TurnLoop, execute
from assistd.engine.toolbox import Toolbox, offered_functions
from assistd.errors import InvalidRequest
from assistd.ids import now
from assistd.llm.catalog import ModelCatalog
from assistd.llm.registry import ModelRegistry
from assistd.services.response_views import response_object
from assistd.services.responses import CONVERSATION_UPTO, ResponseService, input_of
from assistd.storage.responses import ResponseEventRow, ResponseItemRow, ResponseRow

log = logging.getLogger("assistd.engine")


class ResponseExecutor:
    def __init__(
        self,
        queue: ClaimQueue,
        responses: ResponseService,
        registry: ModelRegistry,
        catalog: ModelCatalog,
        toolbox: Toolbox,
        settings: Settings,
    ) -> None:
        self.queue = queue
        self.responses = responses
        self.registry = registry
        self.catalog = catalog
        self.toolbox = toolbox
        self.settings = settings
        self.metrics: Any = None  # the container's Metrics, given to each response's turn loop

    def execute(self, job_id: str, cancel: threading.Event) -> None:
        try:
            row, before, own = self.queue.read(f"reading {job_id}", lambda s: self._read(s, job_id))
        except LostClaim:
            raise
        except Exception as exc:  # its conversation deleted meanwhile, say: it ends, never stuck
            log.warning("response %s could not start: %s", job_id, exc)
            message = f"The response could not start: {exc}"
            self.finish(job_id, "failed", {"code": "server_error", "message": message})
            return
        if row.status == "cancelled":
            return
        tape = ResponseTape(self.queue, row, before + own, self.responses.conversations)
        tape.turns = chat_turns(before + own)
        job = self._job(row, before + own)
        loop = TurnLoop(tape, self.registry, self.catalog, self.toolbox, self.settings)
        loop.metrics = self.metrics
        execute(tape, loop, job, cancel)

    def count_prompt(self, row: ResponseRow, before: list[dict[str, Any]], own: list[dict[str, Any]]) -> int:
        """The tokens of the response's first prompt, rendered as its first turn renders it."""
        items = before + own
        job = self._job(row, items)
        entry = self.catalog.require(row.model)
        backend = self.registry.get(row.model)
        functions = offered_functions(job, entry, bool(job.tool_resources["file_search"]["vector_store_ids"]))
        try:
            turn = PromptBuilder(self.toolbox.files, self.settings, self.toolbox.images).build(
                backend, job, entry, chat_turns(items), [], functions
            )
        except PromptTooLong as exc:  # the client's input: a 400, as a response would fail
            raise InvalidRequest(
                f"The input is too long: {exc}.", param="input", code="context_length_exceeded"
            ) from None
        except CannotSee as exc:
            raise InvalidRequest(str(exc), param="model") from None
        except ImageUnavailable as exc:
            raise InvalidRequest(str(exc), param="input") from None
        except TemplateRefused as exc:
            message = f"The chat template of model '{row.model}' refused the conversation: {exc}"
            raise InvalidRequest(message, param="input") from None
        return turn.tokens

    @staticmethod
    def _job(row: ResponseRow, items: list[dict[str, Any]]) -> Any:
        job = job_of(row)
        job.status = "queued" if row.status in ("queued", "in_progress") else row.status
        job.instructions = "\n\n".join(t for t in [row.instructions or "", *system_texts(items)] if t)
        return job

    def _read(
        self, s: Session, job_id: str
    ) -> tuple[ResponseRow, list[dict[str, Any]], list[dict[str, Any]]]:
        row = s.get(ResponseRow, job_id)
        if row is None:
            raise LostClaim(job_id)
        previous = s.get(ResponseRow, row.previous_response_id) if row.previous_response_id else None
        if row.conversation_id:  # the conversation holds this response's input already: it is the history
            upto = row.params.get(CONVERSATION_UPTO)
            return row, self.responses.history(s, row.project, None, row.conversation_id, upto), []
        return row, self.responses.history(s, row.project, previous, None), input_of(s, job_id)

    def finish(
        self,
        job_id: str,
        status: str,
        last_error: dict[str, str] | None = None,
        incomplete_details: dict[str, str] | None = None,
    ) -> bool:
        status = "failed" if status == "expired" else status
        return finish_response(
            self.queue,
            job_id,
            status,
            last_error,
            incomplete_details,
            conversations=self.responses.conversations,
        )

    def housekeeping(self) -> int:
        """Responses made with `store: false` are deleted KEEP_SECONDS after they ended (finish_response
        dates that in `expires_at`; their stream may be read until then)."""
        with self.queue.db.session() as s:
            gone = s.execute(
                delete(ResponseRow).where(
                    ResponseRow.stored == False,  # noqa: E712
                    ResponseRow.status.in_(TERMINAL),  # type: ignore[attr-defined]
                    ResponseRow.expires_at != None,  # noqa: E711
                    ResponseRow.expires_at < now(),
                )
            )
            return gone.rowcount or 0

    def requeue_unstarted(self, job_id: str, holder: bool = True) -> bool:
        """Gives a response that produced nothing back to the queue (ClaimQueue.requeue_unstarted): no
        output item, and no item begun in a stream that other nodes read (the database's event log; with
        the in-process bus the streams died with the process that ran it)."""
        produced = or_(
            exists().where(ResponseItemRow.response_id == job_id, ResponseItemRow.output == True),  # noqa: E712
            exists().where(
                ResponseEventRow.response_id == job_id, ResponseEventRow.name == "response.output_item.added"
            ),
        )

        def requeued(_s: Session, row: Any) -> Event:
            return Event(
                "response.queued", ev.event("response.queued", response=response_object(row, [], ()))
            )

        return self.queue.requeue_unstarted(job_id, produced, requeued, holder)
