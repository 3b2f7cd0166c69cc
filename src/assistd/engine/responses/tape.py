"""What a response's turn loop writes (engine/runner.py `TurnLoop`): the vocabulary a run's RunStore speaks
(`open_step`, `step_delta`, `save_step`, `open_message`, `text_delta`, `save_message`, `require_action`,
`finish`...), written as the response's output items and the Responses API's stream events.

A message step and its message become a `message` item; a tool_calls step becomes one item per call
(`function_call`, `code_interpreter_call`, `file_search_call`); the reasoning the model family's channels
keep apart becomes a `reasoning` item before them. Function calls end the response (`completed`, the calls
its last items: the client answers them in its next request). Steps are kept in memory for the loop's own
rules (what tool_choice forces, the token budget, repeated calls); items are written as they complete, in one
fenced transaction each (engine/claims.py), with their events."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from assistd.engine.claims import ClaimQueue, JobEnd, LostClaim
from assistd.engine.events import Event
from assistd.engine.responses import events as ev
from assistd.engine.responses.history import last_user_text
from assistd.engine.stopping import RunStopped
from assistd.errors import NotFound
from assistd.ids import created_at_of, new_id, now
from assistd.protocol.items import CODE_INTERPRETER_CALL_PREFIX, FILE_SEARCH_CALL_PREFIX, view_item
from assistd.services.response_views import (
    MARKER_CLOSE,
    MARKER_OPEN,
    MAX_MARKER,
    output_annotations,
    response_object,
    strip_markers,
    unmarked,
)
from assistd.storage.messages import MessageRow
from assistd.storage.responses import ResponseItemRow, ResponseRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

log = logging.getLogger("assistd.engine")
TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})
STATUS = {"expired": "failed"}  # a run's end statuses a response does not have


class ResponseTape:
    def __init__(self, queue: ClaimQueue, row: ResponseRow, history: list[dict[str, Any]], conversation: Any):
        self.queue = queue
        self.bus = queue.bus
        self.db = queue.db
        self.response_id = row.id
        self.row = row
        self.items_before = history  # the conversation so far (for the automatic file search's query)
        self.turns: list[dict[str, Any]] = []  # what the model reads of it (set by the executor)
        self.conversations = conversation  # appends the output to the response's conversation
        self._steps: list[StepRow] = []
        self._outputs: list[dict[str, Any]] = []  # the output items so far, in order
        self._open: dict[str, int] = {}  # call id / message id -> output index of its item
        self._reasoning: dict[str, Any] | None = None  # the reasoning item being streamed
        self._usage = {"input": 0, "output": 0, "cached": 0, "reasoning": 0}
        self.include = tuple(row.params.get("include") or ())  # what its events show of tool items
        self._held = ""  # text held back from the stream while it may be a citation marker
        self._streamed: list[str] = []  # the open message's text as its deltas gave it

    # ------------------------------------------------------------------------------------------ events
    def _publish(self, kind: str, /, **fields: Any) -> None:
        """A delta event: delivered at once (numbered by the bus, in order with the state changes)."""
        self.bus.publish(self.response_id, kind, ev.event(kind, **fields))

    def _tx(self, body: Any) -> Any:
        return self.queue.tx(self.response_id, body)

    # ------------------------------------------------------------------------------------- reading
    def history(self, run: RunRow) -> list[dict[str, Any]]:
        return self.turns

    def last_user_text(self, run: RunRow) -> str:
        return last_user_text(self.items_before)

    def steps(self, run_id: str) -> list[StepRow]:
        return list(self._steps)

    def tool_resources(self, run: RunRow) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, run.tool_resources or {}

    def drop(self, run_id: str) -> None:
        """Nothing read ahead to forget: a response's input is its own, fixed at creation."""

    # ------------------------------------------------------------------------------------ status
    def start(self, run_id: str) -> Any:
        def body(s: Session, events: list[Event]) -> ResponseRow:
            row = _row(s, self.response_id)
            if row.status == "queued":
                row.status = "in_progress"
                row.started_at = row.started_at or now()
                s.add(row)
                s.flush()
                events.append(
                    Event(
                        "response.in_progress", ev.event("response.in_progress", response=self._view(s, row))
                    )
                )
            return row

        row = self._tx(body)
        self.row = row
        return _Status("cancelling" if row.status == "cancelled" else row.status)

    def add_tool_round(self, run_id: str) -> int:
        def body(s: Session, _events: list[Event]) -> int:
            row = _row(s, self.response_id)
            row.tool_rounds += 1
            s.add(row)
            return row.tool_rounds

        return self._tx(body)

    def tool_calls_left(self, steps: list[StepRow]) -> int | None:
        """What `max_tool_calls` leaves of the response's tool calls (None: no limit)."""
        limit = self.row.params.get("max_tool_calls")
        if limit is None:
            return None
        made = sum(len(s.step_details.get("tool_calls", [])) for s in steps if s.type == "tool_calls")
        return limit - made

    def generated(self, result: Any, reasoning_tokens: int = 0) -> None:
        """Counts a generation in the response's usage."""
        self._usage["input"] += result.prompt_tokens
        self._usage["output"] += result.completion_tokens
        self._usage["cached"] += result.cached_tokens
        self._usage["reasoning"] += reasoning_tokens

    # --------------------------------------------------------------------------------- reasoning
    def reasoning_delta(self, run: RunRow, text: str) -> None:
        if not text:
            return
        if self._reasoning is None:
            item = {
                "id": new_id("rs_"),
                "type": "reasoning",
                "summary": [],
                "content": [],
                "status": "in_progress",
            }
            index = self._add_output(item)
            self._reasoning = {"item": item, "index": index, "text": ""}
            self._publish("response.output_item.added", output_index=index, item=dict(item, content=[]))
            part = {"type": "reasoning_text", "text": ""}
            self._publish(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
        state = self._reasoning
        state["text"] += text
        self._publish(
            "response.reasoning_text.delta",
            item_id=state["item"]["id"],
            output_index=state["index"],
            content_index=0,
            delta=text,
        )

    def _close_reasoning(self) -> None:
        state, self._reasoning = self._reasoning, None
        if state is None:
            return
        item, index, text = state["item"], state["index"], state["text"]
        part = {"type": "reasoning_text", "text": text}
        item.update(content=[part], status="completed")
        self._publish(
            "response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0, text=text
        )
        self._publish(
            "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
        )
        self._write_item(index, item, "response.output_item.done")

    # ------------------------------------------------------------------------------------- steps
    def open_step(self, run: RunRow, kind: str, details: dict[str, Any]) -> StepRow:
        self._close_reasoning()
        oid = new_id("step_")
        step = StepRow(
            id=oid,
            project=run.project,
            run_id=run.id,
            thread_id="",
            assistant_id="",
            created_at=created_at_of(oid, "step_"),
            type=kind,
            status="in_progress",
            step_details=details,
        )
        self._steps.append(step)
        return step

    def step_delta(self, step: StepRow, delta: dict[str, Any]) -> None:
        for call in delta.get("step_details", {}).get("tool_calls", []):
            kind = call["type"]
            if call.get("id"):  # the first delta of a call: its item is added
                self._open_call(call)
                continue
            key = self._call_key(step, call["index"])
            index = self._open[key]
            item = self._outputs[index]
            if kind == "function":
                piece = call["function"].get("arguments", "")
                item["arguments"] += piece
                self._publish(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=piece,
                )
            elif kind == "code_interpreter":
                ci = call["code_interpreter"]
                if "input" in ci:
                    item["code"] += ci["input"]
                    self._publish(
                        "response.code_interpreter_call_code.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=ci["input"],
                    )
                if ci.get("outputs") is not None:
                    item["outputs"] = [_code_output(o, self.row.container_id) for o in ci["outputs"]]

    def calls_written(self, step: StepRow) -> None:
        """The step's calls are written, not run yet: a code call's code is done and it is interpreting."""
        for call_id in step.step_details.get("_calls", []):
            index = self._open.get(call_id)
            item = self._outputs[index] if index is not None else None
            if item is None or item["type"] != "code_interpreter_call":
                continue
            self._publish(
                "response.code_interpreter_call_code.done",
                item_id=item["id"],
                output_index=index,
                code=item["code"],
            )
            self._publish(
                "response.code_interpreter_call.interpreting", item_id=item["id"], output_index=index
            )
            item["status"] = "interpreting"

    def _call_key(self, step: StepRow, index: int) -> str:
        calls = step.step_details.get("_calls", [])
        return calls[index]

    def _open_call(self, call: dict[str, Any]) -> None:
        kind, call_id = call["type"], call["id"]
        step = self._steps[-1]
        step.step_details.setdefault("_calls", []).append(call_id)
        if kind == "function":
            item = {
                "id": new_id("fc_"),
                "type": "function_call",
                "call_id": call_id,
                "name": call["function"]["name"],
                "arguments": "",
                "status": "in_progress",
            }
        elif kind == "code_interpreter":
            item = {
                "id": new_id(CODE_INTERPRETER_CALL_PREFIX),
                "type": "code_interpreter_call",
                "code": "",
                "container_id": self.row.container_id or "",
                "outputs": None,
                "status": "in_progress",
            }
        else:
            item = {
                "id": new_id(FILE_SEARCH_CALL_PREFIX),
                "type": "file_search_call",
                "queries": [],
                "status": "in_progress",
                "results": None,
            }
        index = self._add_output(item)
        self._open[call_id] = index
        self._publish("response.output_item.added", output_index=index, item=dict(item))
        if kind == "code_interpreter":
            self._publish(
                "response.code_interpreter_call.in_progress", item_id=item["id"], output_index=index
            )
        elif kind == "file_search":
            self._publish("response.file_search_call.in_progress", item_id=item["id"], output_index=index)
            self._publish("response.file_search_call.searching", item_id=item["id"], output_index=index)

    def save_step(
        self,
        step: StepRow,
        details: dict[str, Any],
        status: str | None = None,
        usage: dict[str, int] | None = None,
        state: dict[str, Any] | None = None,
    ) -> StepRow:
        """Ends the step's calls: their items are done (a function call waits for the client)."""
        calls = step.step_details.get("_calls", [])
        step.step_details = {**details, "_calls": calls}
        step.usage = usage or step.usage
        step.engine_state = state if state is not None else step.engine_state
        if status is not None:
            step.status = status
        if details.get("type") != "tool_calls":
            return step
        for record in details["tool_calls"]:
            index = self._open.pop(record["id"], None)
            if index is None:
                continue
            self._finish_call(index, record, state or {})
        return step

    def _finish_call(self, index: int, record: dict[str, Any], state: dict[str, Any]) -> None:
        item = self._outputs[index]
        kind = record["type"]
        if kind == "function":
            item.update(arguments=record["function"]["arguments"], status="completed")
            self._publish(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        elif kind == "code_interpreter":
            ci = record["code_interpreter"]
            outputs = [_code_output(o, self.row.container_id) for o in ci.get("outputs", [])]
            item.update(code=ci["input"], outputs=outputs, status="completed")
            self._publish("response.code_interpreter_call.completed", item_id=item["id"], output_index=index)
        else:
            search = (state.get("searches") or {}).get(record["id"], {})
            results = [
                {
                    "file_id": r["file_id"],
                    "filename": r["file_name"],
                    "score": r["score"],
                    "text": "".join(c.get("text", "") for c in r.get("content", [])),
                    "attributes": {},
                }
                for r in (record.get("file_search") or {}).get("results", [])
            ]
            item.update(queries=[search.get("query", "")], results=results, status="completed")
            self._publish("response.file_search_call.completed", item_id=item["id"], output_index=index)
        self._write_item(
            index, item, "response.output_item.done", state={"rendered": _rendered(record, state)}
        )

    # ---------------------------------------------------------------------------------- messages
    def open_message(self, run: RunRow, message_id: str) -> MessageRow:
        self._close_reasoning()
        message = MessageRow(
            id=message_id,
            project=run.project,
            thread_id="",
            created_at=now(),
            role="assistant",
            content=[],
            status="in_progress",
            run_id=run.id,
        )
        item = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        index = self._add_output(item)
        self._open[message_id] = index
        self._publish("response.output_item.added", output_index=index, item=dict(item, content=[]))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self._publish(
            "response.content_part.added", item_id=message_id, output_index=index, content_index=0, part=part
        )
        return message

    def text_delta(
        self, message: MessageRow, index: int, value: str, annotations: list[dict[str, Any]] | None = None
    ) -> None:
        self._text_out(message.id, self._open[message.id], self._unmarked(value))

    def _text_out(self, message_id: str, index: int, delta: str) -> None:
        if delta:
            self._streamed.append(delta)
            self._publish(
                "response.output_text.delta",
                item_id=message_id,
                output_index=index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )

    def _unmarked(self, value: str) -> str:
        """The streamed text without citation markers (the Responses API cites by annotation only): text
        from an unclosed `【` is held back until the marker closes (or is plainly not one)."""
        text, self._held = self._held + value, ""
        start = text.rfind(MARKER_OPEN)
        if start != -1 and MARKER_CLOSE not in text[start:] and len(text) - start < MAX_MARKER:
            text, self._held = text[:start], text[start:]
        return strip_markers(text)

    def part_delta(self, message: MessageRow, part: dict[str, Any]) -> None:
        pass  # images the code showed are in its code_interpreter_call item's outputs

    def save_message(
        self,
        message: MessageRow,
        content: list[dict[str, Any]],
        status: str | None = None,
        incomplete_reason: str | None = None,
    ) -> MessageRow:
        if status is None:
            return message  # progress is in the stream; the item is written when it ends
        index = self._open.pop(message.id)
        text_part = next(p for p in content if p["type"] == "text")
        text, marked = unmarked(text_part["text"]["value"], text_part["text"].get("annotations") or [])
        # the deltas add up to the text: what was held back as a possible marker, and what the end added
        # (a file's link, the space before citation markers of a reply that cited none)
        streamed, self._held = "".join(self._streamed), ""
        if text.startswith(streamed):
            self._text_out(message.id, index, text[len(streamed) :])
        else:
            log.warning("response %s: the final text is not what its deltas streamed", self.row.id)
        self._streamed = []
        annotations = output_annotations(marked, self.row.container_id)
        for i, annotation in enumerate(annotations):
            self._publish(
                "response.output_text.annotation.added",
                item_id=message.id,
                output_index=index,
                content_index=0,
                annotation_index=i,
                annotation=annotation,
            )
        part = {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}
        self._publish(
            "response.output_text.done",
            item_id=message.id,
            output_index=index,
            content_index=0,
            text=text,
            logprobs=[],
        )
        self._publish(
            "response.content_part.done", item_id=message.id, output_index=index, content_index=0, part=part
        )
        item = self._outputs[index]
        item.update(content=[part], status="completed" if status == "completed" else "incomplete")
        self._write_item(index, item, "response.output_item.done")
        message.status = status
        return message

    def open_reply(self, run: RunRow, message_id: str, details: dict[str, Any]) -> tuple[StepRow, MessageRow]:
        """A message step and its message (the message item; the step is the loop's own)."""
        return self.open_step(run, "message_creation", details), self.open_message(run, message_id)

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
        """The reply's end: its message item, its step, and the response's end."""
        self.save_message(message, content, status=status, incomplete_reason="max_tokens")
        self.save_step(step, details, status="completed", usage=usage, state=state)
        return self.finish(self.response_id, status, incomplete_details=incomplete_details)

    # ------------------------------------------------------------------------------------- the end
    def require_action(self, run_id: str, calls: list[dict[str, Any]]) -> None:
        """Function calls end the response: the client answers them in its next request."""
        self.finish(run_id, "completed")

    def finish(
        self,
        run_id: str,
        status: str,
        last_error: dict[str, str] | None = None,
        incomplete_details: dict[str, str] | None = None,
    ) -> bool:
        try:
            self._close_reasoning()
            for index in list(self._open.values()):  # what was still open ends with the response
                item = self._outputs[index]
                item["status"] = "incomplete"
                self._write_item(index, item, "response.output_item.done")
        except (RunStopped, LostClaim):  # it had ended already (cancelled): nothing more is written
            pass
        self._open.clear()
        usage = self.usage()
        if incomplete_details is not None:
            incomplete_details = {"reason": "max_output_tokens"}
        done = finish_response(
            self.queue,
            self.response_id,
            STATUS.get(status, status),
            last_error,
            incomplete_details,
            usage,
            self.conversations,
        )
        return done

    def usage(self) -> dict[str, Any]:
        u = self._usage
        return {
            "input_tokens": u["input"],
            # the prompt tokens the engine evaluated (not read from its KV cache) stay there for the next
            # turn: written to the cache
            "input_tokens_details": {
                "cached_tokens": u["cached"],
                "cache_write_tokens": max(0, u["input"] - u["cached"]),
            },
            "output_tokens": u["output"],
            "output_tokens_details": {"reasoning_tokens": u["reasoning"]},
            "total_tokens": u["input"] + u["output"],
        }

    # ------------------------------------------------------------------------------------- items
    def _add_output(self, item: dict[str, Any]) -> int:
        self._outputs.append(item)
        return len(self._outputs) - 1

    def _write_item(
        self, index: int, item: dict[str, Any], event: str, state: dict[str, Any] | None = None
    ) -> None:
        data = json.loads(json.dumps(item))

        def body(s: Session, events: list[Event]) -> None:
            if _row(s, self.response_id).status in TERMINAL:  # cancelled by the client meanwhile
                raise RunStopped("cancelled")
            seq = _next_seq(s, self.response_id)
            s.add(
                ResponseItemRow(
                    response_id=self.response_id,
                    seq=seq,
                    output=True,
                    item_id=data.get("id"),
                    type=data["type"],
                    data=data,
                    state=state,
                )
            )
            shown = view_item(data, self.include)
            events.append(Event(event, ev.event(event, output_index=index, item=shown)))

        self._tx(body)

    def _view(self, s: Session, row: ResponseRow) -> dict[str, Any]:
        return response_object(row, output_of(s, row.id), self.include)


class _Status:
    def __init__(self, status: str) -> None:
        self.status = status


def _row(s: Session, response_id: str) -> ResponseRow:
    row = s.get(ResponseRow, response_id)
    if row is None:  # deleted while it was executing
        raise LostClaim(response_id)
    return row


def _next_seq(s: Session, response_id: str) -> int:
    last = s.exec(
        select(func.max(ResponseItemRow.seq)).where(ResponseItemRow.response_id == response_id)
    ).one()
    return (last or 0) + 1


def output_of(s: Session, response_id: str) -> list[dict[str, Any]]:
    rows = s.exec(
        select(ResponseItemRow)
        .where(ResponseItemRow.response_id == response_id, ResponseItemRow.output == True)  # noqa: E712
        .order_by(ResponseItemRow.seq)  # type: ignore[arg-type]
    )
    return [r.data for r in rows]


def finish_response(
    queue: ClaimQueue,
    response_id: str,
    status: str,
    last_error: dict[str, str] | None = None,
    incomplete_details: dict[str, str] | None = None,
    usage: dict[str, Any] | None = None,
    conversations: Any = None,
    guard: str | None = None,
) -> bool:
    """Ends the response (once: False when it had ended, or another worker holds it) with its event; its
    output joins its conversation. guard "any": whoever holds it (a client's cancel: the worker stops at
    its next write, which finds the response ended)."""

    def body(s: Session, events: list[Event]) -> bool:
        # locked: a client's cancel and the worker's end race (PostgreSQL's READ COMMITTED would let both
        # read `in_progress`); the second one finds the first's status and changes nothing
        row = s.get(ResponseRow, response_id, with_for_update=True)
        if row is None or row.status in TERMINAL:
            return False
        row.status = status
        row.error = last_error if status == "failed" else None
        row.incomplete_details = incomplete_details if status == "incomplete" else None
        row.usage = usage if usage is not None else row.usage
        row.completed_at = now() if status == "completed" else None
        if not row.stored:  # deleted this long after it ended (ResponseExecutor.housekeeping)
            row.expires_at = now() + ev.KEEP_SECONDS
        if (
            guard != "any"
        ):  # (a client's cancel leaves the claim to its holder, which stops at its next write)
            row.worker_id, row.lease_until = None, None
        s.add(row)
        s.flush()
        output = output_of(s, response_id)
        if row.conversation_id and conversations is not None and status != "cancelled":
            try:
                conversations.append(s, row.project, row.conversation_id, output)
            except NotFound:  # the conversation was deleted meanwhile: the response ends all the same
                log.info("response %s: its conversation %s is gone", response_id, row.conversation_id)
        if status == "cancelled":
            events.append(Event(ev.END, None))
        else:
            name = f"response.{status}"
            include = tuple(row.params.get("include") or ())
            events.append(Event(name, ev.event(name, response=response_object(row, output, include))))
        queue.report_end_at_commit(s, JobEnd.of(row))
        return True

    guard = guard or ("claim" if queue.holds(response_id) else "unheld")
    done = queue.tx(response_id, body, guard=guard)
    if guard != "any":
        queue.release(response_id)
    return bool(done)


def _code_output(output: dict[str, Any], container_id: str | None) -> dict[str, Any]:
    if output.get("type") == "image":  # a file of the response's container (ContainerService.run_code)
        file_id = output["image"]["file_id"]
        return {"type": "image", "url": f"/v1/containers/{container_id}/files/{file_id}/content"}
    return {"type": "logs", "logs": output.get("logs", "")}


def _rendered(record: dict[str, Any], state: dict[str, Any]) -> str | None:
    search = (state.get("searches") or {}).get(record["id"])
    return search.get("rendered") if search else None
