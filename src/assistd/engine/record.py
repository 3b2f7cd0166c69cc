"""Recording the model's reply as run steps: the final message (its file citations, the images and files
the run's code made) that ends the run, and a tool_calls step with the deltas that stream its calls, saved
completed or left open while the run waits for the client's function outputs."""

from __future__ import annotations

import logging
from typing import Any

from assistd.config import Settings
from assistd.engine import citations
from assistd.engine.budget import DESCRIPTION, REASON, Limit
from assistd.engine.reply import Call, Reply
from assistd.engine.store import RunStore
from assistd.engine.streaming import MessageSink
from assistd.engine.toolbox import code_argument
from assistd.llm.backend import GenerationResult
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

log = logging.getLogger("assistd.engine")

ARG_FRAGMENT = 24  # characters of tool-call arguments per streamed delta


class NoAnswer(Exception):
    """The model's final reply holds nothing to show the user (empty, or only tool-call syntax)."""


class Recorder:
    def __init__(self, store: RunStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # ------------------------------------------------------------------------------------ final text
    def final_message(
        self,
        run: RunRow,
        reply: Reply,
        sources: list[citations.Source],
        steps: list[StepRow],
        limit: Limit = "max_completion_tokens",
    ) -> None:
        """Completes the reply's message and ends the run (`incomplete` when a token cap cut it short:
        `limit` is the one that bounded the reply, budget.py)."""
        sink = reply.sink or MessageSink(self.store, run)
        # a cap that came while the model was still thinking: an empty incomplete message (its step counts
        # the reasoning tokens), never the half-thought
        thinking_cut = bool(reply.reasoning) and reply.result.finish_reason == "length"
        if not sink.text.strip() and not _made_outputs(steps) and not thinking_cut:
            raise NoAnswer(_no_answer(reply, self.settings.max_tool_call_tokens))
        sink.open()
        assert sink.message is not None and sink.step is not None
        text, annotations = citations.annotate(sink.text, sources) if sources else (sink.text, [])
        text = self._attach_outputs(steps, sink, text, annotations)
        if len(text) > len(sink.text) or annotations:
            indexed = [{"index": i, **a} for i, a in enumerate(annotations)]
            self.store.text_delta(sink.message, 0, text[len(sink.text) :], indexed or None)
        usage = usage_of(reply.result)
        # Any token cap (the run's max_completion_tokens, the model's max_reply_tokens, the context's end)
        # cut the reply short: it is incomplete, never a completed answer cut mid-word.
        budget_hit = reply.result.finish_reason == "length"
        status = "incomplete" if budget_hit else "completed"
        details = {"type": "message_creation", "message_creation": {"message_id": sink.message.id}}
        state = {"reasoning": reply.reasoning} if reply.reasoning else None  # never shown in the message
        if budget_hit:
            log.info("run %s incomplete: the reply reached %s", run.id, DESCRIPTION[limit])
        # the message, its step and the run's end: one write
        self.store.close_reply(
            sink.message,
            sink.content(annotations, text),
            sink.step,
            details,
            usage,
            state,
            status,
            {"reason": REASON[limit]} if budget_hit else None,
        )

    def close_preamble(self, sink: MessageSink) -> None:
        """The text the model wrote before its tool calls: a message of its own, as the hosted API makes."""
        assert sink.message is not None and sink.step is not None
        self.store.save_message(sink.message, sink.content(), status="completed")
        details = {"type": "message_creation", "message_creation": {"message_id": sink.message.id}}
        self.store.save_step(
            sink.step, details, status="completed", usage=zero_usage()
        )  # counted with the calls

    def _attach_outputs(self, steps: list[StepRow], sink: MessageSink, text: str, annotations: list) -> str:
        """Images the code displayed become image_file parts; files it wrote get file_path annotations
        (`steps`: the run's steps as its last turn began, every tool step of the run among them)."""
        for step in steps:
            for call in step.step_details.get("tool_calls", []):
                if call.get("type") != "code_interpreter":
                    continue
                for output in call["code_interpreter"].get("outputs", []):
                    if output["type"] == "image":
                        part = {"type": "image_file", "image_file": {"file_id": output["image"]["file_id"]}}
                        sink.extra_parts.append(part)
                        assert sink.message is not None
                        self.store.part_delta(sink.message, {"index": len(sink.extra_parts), **part})
                for file_id, name in (step.engine_state or {}).get("files", []):
                    link = f"sandbox:/mnt/data/{name}"
                    if link not in text:
                        gap = "\n\n"[len(text) - len(text.rstrip("\n")) :] if text else ""
                        text = text + gap + f"[{name}]({link})"  # the streamed text stays its prefix
                    start = text.index(link)
                    annotations.append(
                        {
                            "type": "file_path",
                            "text": link,
                            "start_index": start,
                            "end_index": start + len(link),
                            "file_path": {"file_id": file_id},
                        }
                    )
        return text

    # ------------------------------------------------------------------------------------- tool calls
    def open_tool_calls(self, run: RunRow, calls: list[Call]) -> tuple[StepRow, list[dict[str, Any]]]:
        """Opens a tool_calls step and streams its calls; returns the step and the calls' records (which
        the tool step fills with outputs)."""
        step = self.store.open_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        records: list[dict[str, Any]] = []
        for index, call in enumerate(calls):
            record = _call_record(call)
            records.append(record)
            self._stream_call(step, index, record, call)
        self.store.calls_written(step)  # before any of them runs
        return step, records

    def code_outputs(self, step: StepRow, index: int, outputs: list[dict[str, Any]]) -> None:
        """Streams the outputs of the step's code_interpreter call number `index`."""
        indexed = [{"index": i, **o} for i, o in enumerate(outputs)]
        self._delta(
            step, {"index": index, "type": "code_interpreter", "code_interpreter": {"outputs": indexed}}
        )

    def close_tool_calls(
        self,
        run: RunRow,
        step: StepRow,
        records: list[dict[str, Any]],
        state: dict[str, Any],
        usage: dict[str, int],
    ) -> bool:
        """Saves the step: completed, or, when it holds function calls, left open (its usage null) with the
        run in requires_action until the client's outputs arrive. Returns True when the run now waits."""
        details = {"type": "tool_calls", "tool_calls": records}
        functions = [c for c in records if c["type"] == "function"]
        if not functions:
            self.store.save_step(step, details, status="completed", usage=usage, state=state)
            return False
        self.store.save_step(step, details, state={**state, "usage": usage})
        self.store.require_action(
            run.id,
            [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                }
                for c in functions
            ],
        )
        return True

    def _stream_call(self, step: StepRow, index: int, record: dict[str, Any], call: Call) -> None:
        kind = record["type"]
        if kind == "function":
            first = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": "", "output": None},
            }
            self._delta(step, first)
            for piece in _fragments(call.arguments):
                self._delta(step, {"index": index, "type": "function", "function": {"arguments": piece}})
        elif kind == "code_interpreter":
            code = record["code_interpreter"]["input"]
            self._delta(
                step,
                {
                    "index": index,
                    "id": call.id,
                    "type": "code_interpreter",
                    "code_interpreter": {"input": "", "outputs": []},
                },
            )
            for piece in _fragments(code):
                self._delta(
                    step, {"index": index, "type": "code_interpreter", "code_interpreter": {"input": piece}}
                )
        else:
            self._delta(step, {"index": index, "id": call.id, "type": "file_search", "file_search": {}})

    def _delta(self, step: StepRow, call: dict[str, Any]) -> None:
        self.store.step_delta(step, {"step_details": {"type": "tool_calls", "tool_calls": [call]}})


def usage_of(result: GenerationResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def zero_usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _call_record(call: Call) -> dict[str, Any]:
    if call.name == "code_interpreter":
        return {
            "id": call.id,
            "type": "code_interpreter",
            "code_interpreter": {"input": code_argument(call.arguments), "outputs": []},
        }
    if call.name == "file_search":
        return {"id": call.id, "type": "file_search", "file_search": {}}
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments, "output": None},
    }


def _fragments(text: str) -> list[str]:
    return [text[i : i + ARG_FRAGMENT] for i in range(0, len(text), ARG_FRAGMENT)]


def _made_outputs(steps: list[StepRow]) -> bool:
    """Whether this run's code showed images or wrote files: the message carries them even without text."""
    for step in steps:
        if (step.engine_state or {}).get("files"):
            return True
        for call in step.step_details.get("tool_calls", []) if step.type == "tool_calls" else []:
            outputs = (call.get("code_interpreter") or {}).get("outputs", [])
            if any(o.get("type") == "image" for o in outputs):
                return True
    return False


def _no_answer(reply: Reply, call_tokens: int) -> str:
    if reply.unfinished_call:
        return (
            "The model began a tool call that did not parse (within max_tool_call_tokens="
            f"{call_tokens}) and wrote no answer."
        )
    if reply.reasoning and not reply.stray_call:  # an unclosed think block is reasoning (llama.cpp, vLLM)
        return (
            "The model gave no answer: its whole reply was reasoning (it never closed its think block), "
            "which is never shown as a message."
        )
    return "The model gave no answer: its reply was empty once tool-call syntax was left out."
