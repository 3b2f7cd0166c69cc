"""One run, from claim to its end or to `requires_action`: build the prompt, ask the model, record the
reply as a message or as tool calls, run server-side tools and loop."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from assistd.config import ModelEntry, Settings
from assistd.engine import citations
from assistd.engine.context import Conversation, PromptTooLong, fit, history_messages, tool_turns
from assistd.engine.store import RunStore
from assistd.engine.streaming import MarkerWatch, MessageSink
from assistd.engine.toolbox import (
    Toolbox,
    ToolUnavailable,
    chat_tools,
    code_argument,
    file_search_settings,
    offered_functions,
    query_argument,
)
from assistd.errors import NotFound
from assistd.llm.backend import GenerationParams, GenerationResult, LLMBackend
from assistd.llm.catalog import ModelCatalog
from assistd.llm.registry import LockAbandoned, ModelRegistry
from assistd.storage.runs import RunRow

log = logging.getLogger("assistd.engine")

INDEX_POLL_SECONDS = 0.2
ARG_FRAGMENT = 24  # characters of tool-call arguments per streamed delta
CODE_FENCE, CODE_FENCE_END = "```python\n", "```"
CODE_HINT = (
    "\n\nAnswer by writing Python code in a ```python block; it is run in a Jupyter kernel and you see its "
    "output. The user's files are in /mnt/data; save files for the user there."
)


class StopSignal(threading.Event):
    """Set to stop a run's execution. With `release`, the run was given back to the queue (the server is
    stopping before the run started): the executor leaves it as it is instead of ending it."""

    release = False


class RunStopped(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status  # "cancelled" or "expired"


class RoundLimit(Exception):
    pass


class NoAnswer(Exception):
    """The model's final reply holds nothing to show the user (empty, or only tool-call syntax)."""


@dataclass
class Call:
    id: str
    name: str
    arguments: str


@dataclass
class Reply:
    text: str
    calls: list[Call]
    result: GenerationResult
    sink: MessageSink | None  # the streamed message, when the reply was text (or text before its calls)
    unfinished_call: bool = False  # the reply opened a tool call that did not parse


def new_call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "A").replace("_", "b")


class RunExecutor:
    def __init__(
        self,
        store: RunStore,
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

    # ---------------------------------------------------------------------------------------- entry
    def execute(self, run_id: str, cancel: threading.Event) -> None:
        run = self.store.run(run_id)
        if run.status == "cancelling":
            self.store.finish(run_id, "cancelled")
            return
        if run.status != "queued":
            return
        try:
            self._loop(run, cancel)
        except RunStopped as stop:
            if not getattr(cancel, "release", False):
                self.store.finish(run_id, stop.status)
        except PromptTooLong as exc:
            if run.max_prompt_tokens:
                self.store.finish(run_id, "incomplete", incomplete_details={"reason": "max_prompt_tokens"})
            else:
                self.store.finish(
                    run_id, "failed", {"code": "invalid_prompt", "message": f"The prompt is too long: {exc}."}
                )
        except RoundLimit as exc:
            self.store.finish(run_id, "failed", {"code": "server_error", "message": str(exc)})
        except ToolUnavailable as exc:
            self.store.finish(run_id, "failed", {"code": "server_error", "message": f"{exc}."})
        except NoAnswer as exc:
            self.store.finish(run_id, "failed", {"code": "server_error", "message": str(exc)})
        except Exception as exc:
            log.exception("run %s failed", run_id)
            self.store.finish(run_id, "failed", {"code": "server_error", "message": f"The run failed: {exc}"})

    def _wait_for_indexing(self, run: RunRow, store_ids: list[str], cancel: threading.Event) -> None:
        """As the hosted API does, a run starts answering once the files of its vector stores are indexed
        (a file attached a moment ago is otherwise invisible to the search)."""
        while store_ids and self.toolbox.pending_files(run, store_ids):
            self._check(run, cancel)
            time.sleep(INDEX_POLL_SECONDS)

    def _begin(self, run: RunRow, cancel: threading.Event) -> None:
        """The run is being worked on now (it has the model, or a tool step opens): `queued` becomes
        `in_progress` (once; later calls change nothing). A cancel that came while it waited ends it."""
        self._check(run, cancel)
        if self.store.start(run.id).status == "cancelling":
            raise RunStopped("cancelled")

    def _check(self, run: RunRow, cancel: threading.Event) -> None:
        if cancel.is_set():
            raise RunStopped("cancelled")
        if run.expires_at is not None and time.time() >= run.expires_at:
            raise RunStopped("expired")

    # ----------------------------------------------------------------------------------------- loop
    def _loop(self, run: RunRow, cancel: threading.Event) -> None:
        entry = self.catalog.require(run.model)
        assistant_res, thread_res = self.store.tool_resources(run)
        store_ids = self.toolbox.store_ids(run, assistant_res, thread_res) if _has(run, "file_search") else []
        sources: list[citations.Source] = []
        self._wait_for_indexing(run, store_ids, cancel)
        if store_ids and entry.file_search_query != "model" and run.tool_choice != "none":
            sources += self._auto_search(run, entry, store_ids, cancel)
        while True:
            self._check(run, cancel)
            history = self.store.history(run)
            steps = self.store.steps(run.id)
            functions = offered_functions(run, entry, bool(store_ids))
            reply = self._ask_model(run, entry, history, steps, functions, cancel)
            if reply.calls and reply.sink is not None:
                self._close_preamble(reply.sink)
            if reply.calls and _repeats(reply.calls, steps):
                # The model asks again for what this run already called and got back (small models loop
                # so): it answers with those results instead, without tools.
                reply = self._ask_model(run, entry, history, steps, [], cancel)
            if not reply.calls:
                self._finish_message(run, reply, sources, steps)
                return
            if self._record_calls(
                run, reply, history, assistant_res, thread_res, store_ids, entry, sources, cancel
            ):
                return  # parked in requires_action

    # --------------------------------------------------------------------------------- model request
    def _ask_model(
        self,
        run: RunRow,
        entry: ModelEntry,
        history: list,
        steps: list,
        functions: list[dict],
        cancel: threading.Event,
    ) -> Reply:
        stopping = lambda: cancel.is_set() or (run.expires_at is not None and time.time() >= run.expires_at)  # noqa: E731
        try:
            with self.registry.use(run.model, abandon=stopping) as backend:
                self._begin(run, cancel)
                return self._ask_locked(backend, run, entry, history, steps, functions, cancel, stopping)
        except LockAbandoned:
            self._check(run, cancel)
            raise

    def _ask_locked(
        self,
        backend: LLMBackend,
        run: RunRow,
        entry: ModelEntry,
        history: list,
        steps: list,
        functions: list[dict],
        cancel: threading.Event,
        stop: Any,
    ) -> Reply:
        self._check(run, cancel)
        fmt = _tool_format(backend)  # also when no tools are offered: its markers are then stop strings
        shows_tools = bool(functions) or any(s.type == "tool_calls" for s in steps)
        forced = _forced(run, functions, steps)
        code_only = forced is not None and _code_only(forced, functions)
        tools_arg = [] if code_only else chat_tools(functions)

        def render(messages: list[dict[str, Any]]) -> str:
            if not shows_tools:
                return backend.render(messages)
            from assistd.tools.calls import template_takes_tools

            prepared, tools_for_template = fmt.prepare(
                messages, tools_arg, template_takes_tools(backend.chat_template)
            )
            return backend.render(prepared, tools_for_template)

        filenames = self._filenames(run, history)
        conversation = Conversation(
            system=_system_prompt(run) + (CODE_HINT if code_only else ""),
            history=history_messages(history, filenames),
            tool_turns=tool_turns(steps),
        )
        max_tokens = self._max_tokens(run, steps)
        prompt = fit(backend, conversation, run, reserve=min(max_tokens, backend.n_ctx // 2), render=render)
        params = GenerationParams(
            max_tokens=max_tokens,
            temperature=run.temperature if run.temperature is not None else entry.temperature,
            top_p=run.top_p if run.top_p is not None else entry.top_p,
            repeat_penalty=entry.repeat_penalty,
        )
        if code_only:
            return self._forced_code(backend, prompt.text, params, run, stop)
        if forced is not None:
            return self._forced_calls(backend, fmt, prompt.text, params, functions, forced, run, stop)
        grammar = _response_grammar(run.response_format)
        if grammar is not None:  # the grammar admits JSON only: no tool markup can start
            params.grammar = grammar
            return self._text(backend, None, prompt.text, params, run, stop)
        if not functions:  # tools are off: any tool markup ends the reply
            params.stop = [*params.stop, *fmt.stop_markers(_tool_names(run))]
            return self._text(backend, fmt, prompt.text, params, run, stop)
        return self._auto(backend, fmt, prompt.text, params, functions, run, stop)

    def _text(
        self, backend: LLMBackend, fmt: Any, prompt: str, params: GenerationParams, run: RunRow, stop
    ) -> Reply:
        sink = MessageSink(self.store, run)
        result = backend.generate(prompt, params, sink.write, stop)
        self._after_generation(run, result)
        if fmt is not None:
            _drop_markup(sink, fmt, _tool_names(run))
        return Reply(text=sink.text, calls=[], result=result, sink=sink)

    def _auto(
        self,
        backend: LLMBackend,
        fmt: Any,
        prompt: str,
        params: GenerationParams,
        functions: list[dict],
        run: RunRow,
        stop,
    ) -> Reply:
        """The model answers or calls tools, as it likes. Text streams as message text until a call opens
        (the format's marker, or a call's JSON without it, wherever it comes); the call is then finished
        under the grammar, in the format's own syntax. Other tool markup (a stray closing tag) ends the
        reply."""
        sink = MessageSink(self.store, run)
        names = _tool_names(run)
        opening = fmt.call_markers(names)
        watch = MarkerWatch(opening)
        # Other markup ends the reply; not markup that contains an opening (the stop would hide it).
        others = [m for m in fmt.stop_markers(names) if not any(o in m for o in opening)]
        first = dataclasses.replace(params, stop=[*params.stop, *others])
        result = backend.generate(
            prompt, first, lambda piece: sink.write(watch.feed(piece)), lambda: stop() or watch.triggered
        )
        if not watch.triggered:
            sink.write(watch.flush())
            self._after_generation(run, result)
            _drop_markup(sink, fmt, names)
            return Reply(text=sink.text, calls=[], result=result, sink=sink)
        # The reply opened a tool call: finish it under the grammar so that it parses.
        head = watch.before + fmt.start_marker
        params.grammar = fmt.grammar(functions, parallel=run.parallel_tool_calls, continuation=True)
        params.max_tokens = min(params.max_tokens, self.settings.max_tool_call_tokens)
        rest = backend.generate(prompt + head, params, lambda _piece: None, stop)
        self._after_generation(run, rest)
        calls = _named_calls(fmt.parse(head + rest.text).calls)
        combined = GenerationResult(
            text=head + rest.text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens + rest.completion_tokens,
            finish_reason=rest.finish_reason,
        )
        if not calls:
            log.warning(
                "run %s: the model opened a tool call that did not parse: %r", run.id, rest.text[:200]
            )
        _drop_markup(sink, fmt, names)
        return Reply(
            text=sink.text,
            calls=calls,
            result=combined,
            sink=sink if sink.message is not None or not calls else None,
            unfinished_call=not calls,
        )

    def _forced_calls(
        self,
        backend: LLMBackend,
        fmt: Any,
        prompt: str,
        params: GenerationParams,
        functions: list[dict],
        forced: dict[str, Any],
        run: RunRow,
        stop,
    ) -> Reply:
        params.grammar = fmt.grammar(functions, **forced)
        params.max_tokens = min(params.max_tokens, self.settings.max_tool_call_tokens)
        result = backend.generate(prompt, params, lambda _piece: None, stop)
        self._after_generation(run, result)
        parsed = fmt.parse(result.text)
        calls = _named_calls(parsed.calls)
        if not calls:
            raise RuntimeError(
                f"the model's reply held no tool call although one was required: {result.text[:200]!r}"
            )
        return Reply(text="", calls=calls, result=result, sink=None)

    def _forced_code(
        self, backend: LLMBackend, prompt: str, params: GenerationParams, run: RunRow, stop: Any
    ) -> Reply:
        """The model must run code: it writes it the way it was trained to, in a ```python fence that the
        prompt opens, rather than as an escaped JSON string, which small models garble."""
        params.stop = [*params.stop, CODE_FENCE_END]
        params.max_tokens = min(params.max_tokens, self.settings.max_tool_call_tokens)
        result = backend.generate(prompt + CODE_FENCE, params, lambda _piece: None, stop)
        self._after_generation(run, result)
        code = result.text.split(CODE_FENCE_END)[0].strip("\n")
        call = Call(new_call_id(), "code_interpreter", json.dumps({"code": code}))
        return Reply(text="", calls=[call], result=result, sink=None)

    def _close_preamble(self, sink: MessageSink) -> None:
        """The text the model wrote before its tool calls: a message of its own, as the hosted API makes."""
        assert sink.message is not None and sink.step is not None
        self.store.save_message(sink.message, sink.content(), status="completed")
        details = {"type": "message_creation", "message_creation": {"message_id": sink.message.id}}
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}  # counted with the calls
        self.store.save_step(sink.step, details, status="completed", usage=zero)

    def _after_generation(self, run: RunRow, result: GenerationResult) -> None:
        if result.finish_reason == "cancelled":
            if run.expires_at is not None and time.time() >= run.expires_at:
                raise RunStopped("expired")
            raise RunStopped("cancelled")

    def _max_tokens(self, run: RunRow, steps: list) -> int:
        limit = self.settings.max_reply_tokens
        if run.max_completion_tokens:
            used = sum((s.usage or {}).get("completion_tokens", 0) for s in steps)
            limit = min(limit, max(1, run.max_completion_tokens - used))
        return limit

    def _filenames(self, run: RunRow, history: list) -> dict[str, str]:
        names = {}
        for message in history:
            for attachment in message.attachments or []:
                try:
                    names[attachment["file_id"]] = self.toolbox.files.get(
                        run.project, attachment["file_id"]
                    ).filename
                except NotFound:  # deleted since: the model sees the id
                    continue
        return names

    # ------------------------------------------------------------------------------------ final text
    def _finish_message(
        self, run: RunRow, reply: Reply, sources: list[citations.Source], steps: list
    ) -> None:
        sink = reply.sink or MessageSink(self.store, run)
        if not sink.text.strip() and not _made_outputs(steps):
            raise NoAnswer(_no_answer(reply, self.settings.max_tool_call_tokens))
        sink.open()
        assert sink.message is not None and sink.step is not None
        text, annotations = citations.annotate(sink.text, sources) if sources else (sink.text, [])
        text = self._attach_outputs(run, sink, text, annotations, steps)
        if len(text) > len(sink.text) or annotations:
            indexed = [{"index": i, **a} for i, a in enumerate(annotations)]
            self.store.text_delta(sink.message, 0, text[len(sink.text) :], indexed or None)
        usage = _usage(reply.result)
        # Any token cap (the run's max_completion_tokens, the server's max_reply_tokens, the context's end)
        # cut the reply short: it is incomplete, never a completed answer cut mid-word.
        budget_hit = reply.result.finish_reason == "length"
        status = "incomplete" if budget_hit else "completed"
        self.store.save_message(
            sink.message, sink.content(annotations, text), status=status, incomplete_reason="max_tokens"
        )
        details = {"type": "message_creation", "message_creation": {"message_id": sink.message.id}}
        self.store.save_step(sink.step, details, status="completed", usage=usage)
        if budget_hit:
            self.store.finish(run.id, "incomplete", incomplete_details={"reason": "max_completion_tokens"})
        else:
            self.store.finish(run.id, "completed")

    def _attach_outputs(
        self, run: RunRow, sink: MessageSink, text: str, annotations: list, steps: list
    ) -> str:
        """Images the code displayed become image_file parts; files it wrote get file_path annotations."""
        for step in self.store.steps(run.id):
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
                        text = text.rstrip() + f"\n\n[{name}]({link})"
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
    def _record_calls(
        self,
        run: RunRow,
        reply: Reply,
        history: list,
        assistant_res: dict,
        thread_res: dict,
        store_ids: list[str],
        entry: ModelEntry,
        sources: list[citations.Source],
        cancel: threading.Event,
    ) -> bool:
        """Records a tool_calls step; runs server-side calls; returns True when the run now waits for the
        client's function outputs."""
        step = self.store.open_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        calls: list[dict[str, Any]] = []
        for index, call in enumerate(reply.calls):
            record = _call_record(call)
            calls.append(record)
            self._stream_call(step, index, record, call)
        state: dict[str, Any] = {"files": []}
        inputs: list[tuple[str, bytes]] | None = None
        for index, (record, call) in enumerate(zip(calls, reply.calls, strict=True)):
            self._check(run, cancel)
            if record["type"] == "code_interpreter":
                if inputs is None:
                    inputs = self.toolbox.input_files(run, assistant_res, thread_res, history)
                result = self.toolbox.run_code(run, record["code_interpreter"]["input"], inputs)
                record["code_interpreter"]["outputs"] = result.outputs
                state["files"] += result.files
                state["code_failed"] = state.get("code_failed", False) or result.error
                outputs = [{"index": i, **o} for i, o in enumerate(result.outputs)]
                self.store.step_delta(
                    step,
                    {
                        "step_details": {
                            "type": "tool_calls",
                            "tool_calls": [
                                {
                                    "index": index,
                                    "type": "code_interpreter",
                                    "code_interpreter": {"outputs": outputs},
                                }
                            ],
                        }
                    },
                )
            elif record["type"] == "file_search":
                max_results, threshold = file_search_settings(run, entry)
                query = query_argument(call.arguments)
                details, found, rendered = self.toolbox.search(
                    run, store_ids, query, max_results, threshold, len(sources)
                )
                record["file_search"] = details
                sources += found
                state.setdefault("searches", {})[record["id"]] = {"query": query, "rendered": rendered}
        usage = _usage(reply.result)
        details = {"type": "tool_calls", "tool_calls": calls}
        functions = [c for c in calls if c["type"] == "function"]
        if self.store.add_tool_round(run.id) > self.settings.max_tool_rounds:
            raise RoundLimit(
                f"The run stopped after {self.settings.max_tool_rounds} consecutive tool rounds "
                "without a final answer (setting max_tool_rounds)."
            )
        if functions:  # the step stays open, its usage null, until the client's outputs arrive
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
        self.store.save_step(step, details, status="completed", usage=usage, state=state)
        return False

    def _stream_call(self, step: Any, index: int, record: dict[str, Any], call: Call) -> None:
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

    def _delta(self, step: Any, call: dict[str, Any]) -> None:
        self.store.step_delta(step, {"step_details": {"type": "tool_calls", "tool_calls": [call]}})

    def _auto_search(
        self, run: RunRow, entry: ModelEntry, store_ids: list[str], cancel: threading.Event
    ) -> list[citations.Source]:
        """For models too small to call file_search: search with the user's last message, once per run."""
        steps = self.store.steps(run.id)
        done = [
            s
            for s in steps
            if s.type == "tool_calls"
            and any(c.get("type") == "file_search" for c in s.step_details.get("tool_calls", []))
        ]
        if done:
            return []
        history = self.store.history(run)
        query = next(
            (
                m.content[0]["text"]["value"]
                for m in reversed(history)
                if m.role == "user" and m.content and m.content[0]["type"] == "text"
            ),
            "",
        )
        if not query:
            return []
        self._begin(run, cancel)
        call = Call(new_call_id(), "file_search", json.dumps({"query": query}))
        step = self.store.open_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        self._stream_call(step, 0, {"type": "file_search"}, call)
        max_results, threshold = file_search_settings(run, entry)
        details, sources, rendered = self.toolbox.search(run, store_ids, query, max_results, threshold, 0)
        record = {"id": call.id, "type": "file_search", "file_search": details}
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        state = {"auto": True, "searches": {call.id: {"query": query, "rendered": rendered}}}
        details = {"type": "tool_calls", "tool_calls": [record]}
        self.store.save_step(step, details, status="completed", usage=zero, state=state)
        return sources


# ------------------------------------------------------------------------------------------- helpers
def _drop_markup(sink: MessageSink, fmt: Any, names: list[str]) -> None:
    """The last guard: tool markup that reached the text (a backend that ignores stop strings) is dropped
    from the message."""
    clean = fmt.visible_text(sink.text, names)
    if clean != sink.text.strip():
        log.warning("tool markup dropped from a reply: %r", sink.text[-200:])
    if clean != sink.text:
        sink.replace_text(clean)


def _made_outputs(steps: list[Any]) -> bool:
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
    return "The model gave no answer: its reply was empty once tool-call syntax was left out."


def _tool_names(run: RunRow) -> list[str]:
    """The names the model calls this run's tools by (its functions, code_interpreter, file_search)."""
    return [t["function"]["name"] if t["type"] == "function" else t["type"] for t in run.tools]


def _has(run: RunRow, kind: str) -> bool:
    return any(t["type"] == kind for t in run.tools)


def _tool_format(backend: LLMBackend) -> Any:
    from assistd.tools.calls import format_for

    return format_for(backend.chat_template)


def _system_prompt(run: RunRow) -> str:
    system = run.instructions or ""
    fmt = run.response_format
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        system = (system + "\n\nAnswer with a single JSON object.").strip()
    return system


def _response_grammar(response_format: Any) -> str | None:
    if not isinstance(response_format, dict) or response_format.get("type") not in (
        "json_object",
        "json_schema",
    ):
        return None
    from assistd.tools.calls import json_schema_grammar

    schema = (
        (response_format.get("json_schema") or {}).get("schema")
        if response_format["type"] == "json_schema"
        else None
    )
    return json_schema_grammar(schema)


def _forced(run: RunRow, functions: list[dict[str, Any]], steps: list[Any]) -> dict[str, Any] | None:
    """Grammar options when the run must call a tool, else None. A tool_choice that requires a call holds
    for the model's first turn, and again after code that raised (so the model tries again, up to
    max_tool_rounds); after a call that worked the model answers freely."""
    choice = run.tool_choice
    if not functions:
        return None
    rounds = [s for s in steps if s.type == "tool_calls" and not (s.engine_state or {}).get("auto")]
    if rounds and not (rounds[-1].engine_state or {}).get("code_failed"):
        return None
    if choice == "required":
        names = [f["name"] for f in functions if f["name"] not in ("code_interpreter", "file_search")]
        if run.parallel_tool_calls and len(names) >= 2:
            return {"names": names, "parallel": True}
        return {"parallel": run.parallel_tool_calls}
    if isinstance(choice, dict):
        name = choice["function"]["name"] if choice["type"] == "function" else choice["type"]
        if any(f["name"] == name for f in functions):
            return {"name": name, "parallel": False}
    return None


def _call_key(name: str, arguments: str) -> tuple[str, str]:
    try:
        return name, json.dumps(json.loads(arguments), sort_keys=True)
    except (TypeError, ValueError):
        return name, arguments


def _repeats(calls: list[Call], steps: list[Any]) -> bool:
    """Whether every call was already made, with the same arguments, earlier in this run."""
    seen = set()
    for step in steps:
        for call in step.step_details.get("tool_calls", []) if step.type == "tool_calls" else []:
            if call["type"] == "function":
                seen.add(_call_key(call["function"]["name"], call["function"]["arguments"]))
            elif call["type"] == "code_interpreter":
                seen.add(
                    _call_key("code_interpreter", json.dumps({"code": call["code_interpreter"]["input"]}))
                )
    return all(_call_key(c.name, c.arguments) in seen for c in calls)


def _code_only(forced: dict[str, Any], functions: list[dict[str, Any]]) -> bool:
    """Whether the forced call can only be a code_interpreter call."""
    if forced.get("name"):
        return forced["name"] == "code_interpreter"
    return [f["name"] for f in functions] == ["code_interpreter"]


def _named_calls(parsed: list[Any]) -> list[Call]:
    return [Call(new_call_id(), c.name, c.arguments) for c in parsed]


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


def _usage(result: GenerationResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
