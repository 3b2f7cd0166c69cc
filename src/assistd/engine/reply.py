"""Asking the model for one reply and reading it: text, tool calls, or text then calls.

The strategy follows the turn: a tool_choice that requires code has the model write it in a ```python
fence; one that requires another call constrains the reply to the format's call syntax by a grammar; a JSON
response_format constrains it to JSON; with no tools the format's markup ends the reply; otherwise the model
answers or calls tools as it likes (`auto`). Text streams into the run's message as it comes; tool-call
syntax never reaches it."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assistd.config import Settings
from assistd.engine.prompt import Turn
from assistd.engine.stopping import after_generation
from assistd.engine.store import RunStore
from assistd.engine.streaming import MessageSink
from assistd.engine.tool_rules import tool_names
from assistd.families import ReplyChannels
from assistd.llm.backend import GenerationParams, GenerationResult, LLMBackend
from assistd.storage.runs import RunRow
from assistd.tools.calls import ParsedCall, ToolFormat, json_schema_grammar

log = logging.getLogger("assistd.engine")

CODE_FENCE, CODE_FENCE_END = "```python\n", "```"

Stop = Callable[[], bool]


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
    stray_call: bool = False  # the reply went into call syntax where no call could be made (tools off)
    reasoning: str = ""  # what the model thought before it answered or called (never shown in a message)


class CallCut(Exception):
    """A required tool call was cut short by a token cap before it closed: the job ends `incomplete`, as a
    reply cut short does (the hosted API's `max_output_tokens` / `max_completion_tokens`)."""

    def __init__(self, result: GenerationResult) -> None:
        super().__init__(f"the required tool call was cut short after {result.completion_tokens} tokens")
        self.result = result


def new_call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "A").replace("_", "b")


class ReplyReader:
    """Generates the reply to a turn's prompt with the strategy the turn calls for, and parses it."""

    def __init__(self, store: RunStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def ask(
        self, backend: LLMBackend, turn: Turn, run: RunRow, functions: list[dict[str, Any]], stop: Stop
    ) -> Reply:
        params = turn.params
        params.preserved_tokens = list(turn.family.preserved)
        if turn.code_only:
            prompt = turn.family.constrained(turn.text, answer=True)
            return self._forced_code(backend, prompt, verbatim(params), run, stop)
        if turn.forced is not None:
            exact = verbatim(params)
            prompt = turn.family.constrained(turn.text, answer=False)
            return self._forced_calls(backend, turn.fmt, prompt, exact, functions, turn.forced, run, stop)
        grammar = response_grammar(run.response_format)
        if grammar is not None:  # the grammar admits JSON only: no tool markup can start
            params.grammar = grammar  # the penalty stays: a JSON answer is composed, and loops without it
            prompt = turn.family.constrained(turn.text, answer=True)
            return self._text(backend, turn, None, prompt, params, run, stop)
        if not functions:  # tools are off: any tool markup ends the reply
            params.stop = [*params.stop, *turn.fmt.stop_markers(tool_names(run))]
            return self._text(backend, turn, turn.fmt, turn.text, params, run, stop)
        return self._auto(backend, turn, turn.text, params, functions, run, stop)

    def _stream(
        self,
        backend: LLMBackend,
        turn: Turn,
        prompt: str,
        params: GenerationParams,
        markers: tuple[str, ...],
        run: RunRow,
        stop: Stop,
    ) -> tuple[MessageSink, ReplyChannels, GenerationResult]:
        """Generates a reply whose content streams into the run's message as it comes; its reasoning is
        kept apart, and generation ends where a tool call begins (`channels.call_at`)."""
        sink = MessageSink(self.store, run)
        channels = turn.family.channels(prompt, markers)
        result = backend.generate(
            prompt,
            params,
            lambda piece: sink.take(channels.feed(piece)),
            lambda: stop() or channels.call_at is not None,
        )
        if channels.call_at is None:
            sink.take(channels.flush())
        elif result.finish_reason == "cancelled" and not stop():  # we ended it where the call began
            result = dataclasses.replace(result, finish_reason="stop")
        return sink, channels, result

    def _text(
        self,
        backend: LLMBackend,
        turn: Turn,
        fmt: ToolFormat | None,
        prompt: str,
        params: GenerationParams,
        run: RunRow,
        stop: Stop,
    ) -> Reply:
        sink, channels, result = self._stream(backend, turn, prompt, params, (), run, stop)
        after_generation(run, result)
        if fmt is not None:
            _drop_markup(sink, fmt, tool_names(run))
        return Reply(
            text=sink.text,
            calls=[],
            result=result,
            sink=sink,
            reasoning=channels.reasoning.strip(),
            stray_call=channels.call_at is not None,  # a call where none can be made ended the reply
        )

    def _auto(
        self,
        backend: LLMBackend,
        turn: Turn,
        prompt: str,
        params: GenerationParams,
        functions: list[dict[str, Any]],
        run: RunRow,
        stop: Stop,
    ) -> Reply:
        """The model answers or calls tools, as it likes. Text streams as message text until a call opens
        (the format's marker, or a call's JSON without it, wherever it comes outside the reasoning); the call
        is then finished under the grammar, in the format's own syntax. Other tool markup (a stray closing
        tag) ends the reply."""
        fmt = turn.fmt
        names = tool_names(run)
        opening = fmt.call_markers(names)
        # Other markup ends the reply; not markup that contains an opening (the stop would hide it).
        others = [m for m in fmt.stop_markers(names) if not any(o in m for o in opening)]
        first = dataclasses.replace(params, stop=[*params.stop, *others])
        sink, channels, result = self._stream(backend, turn, prompt, first, opening, run, stop)
        if channels.call_at is None:
            after_generation(run, result)
            _drop_markup(sink, fmt, names)
            return Reply(
                text=sink.text, calls=[], result=result, sink=sink, reasoning=channels.reasoning.strip()
            )
        # The reply opened a tool call: finish it under the grammar so that it parses.
        head = fmt.head(channels.raw[: channels.call_at])
        params = verbatim(params)
        parallel = run.parallel_tool_calls and not fmt.single_call
        params.grammar = fmt.grammar(functions, parallel=parallel, continuation=True)
        # the reasoning before it counts; not what the engine sent past the marker in the same read
        spent = min(result.completion_tokens, backend.count_tokens(channels.raw[: channels.call_at]))
        left = max(1, params.max_tokens - spent)
        params.max_tokens = min(left, self.settings.max_tool_call_tokens)
        rest = backend.generate(prompt + head, params, lambda _piece: None, stop)
        after_generation(run, rest)
        call_text = head[len(channels.raw[: channels.call_at]) :] + rest.text
        calls = _named_calls(fmt.parse(call_text).calls)
        combined = GenerationResult(
            text=head + rest.text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens + rest.completion_tokens,
            finish_reason=rest.finish_reason,
            cached_tokens=result.cached_tokens,
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
            reasoning=channels.reasoning.strip(),
        )

    def _forced_calls(
        self,
        backend: LLMBackend,
        fmt: ToolFormat,
        prompt: str,
        params: GenerationParams,
        functions: list[dict[str, Any]],
        forced: dict[str, Any],
        run: RunRow,
        stop: Stop,
    ) -> Reply:
        if fmt.single_call:  # one call per message (harmony): the named function, or any one of them
            forced = {"name": forced["name"]} if forced.get("name") else {}
            forced["parallel"] = False
        params.grammar = fmt.grammar(functions, **forced)
        params.max_tokens = min(params.max_tokens, self.settings.max_tool_call_tokens)
        result = backend.generate(prompt, params, lambda _piece: None, stop)
        after_generation(run, result)
        calls = _named_calls(fmt.parse(result.text).calls)
        if not calls and result.finish_reason == "length":
            raise CallCut(result)
        if not calls:
            raise RuntimeError(
                f"the model's reply held no tool call although one was required: {result.text[:200]!r}"
            )
        return Reply(text="", calls=calls, result=result, sink=None)

    def _forced_code(
        self, backend: LLMBackend, prompt: str, params: GenerationParams, run: RunRow, stop: Stop
    ) -> Reply:
        """The model must run code: it writes it the way it was trained to, in a ```python fence that the
        prompt opens, rather than as an escaped JSON string, which small models garble."""
        params.stop = [*params.stop, CODE_FENCE_END]
        params.max_tokens = min(params.max_tokens, self.settings.max_tool_call_tokens)
        result = backend.generate(prompt + CODE_FENCE, params, lambda _piece: None, stop)
        after_generation(run, result)
        code = result.text.split(CODE_FENCE_END)[0].strip("\n")
        call = Call(new_call_id(), "code_interpreter", json.dumps({"code": code}))
        return Reply(text="", calls=[call], result=result, sink=None)


def verbatim(params: GenerationParams) -> GenerationParams:
    """The params for output that must repeat what the prompt says: code and tool-call arguments. The
    repetition penalty (against output that loops) is off there: llama.cpp's server counts the prompt's last
    tokens in it, so the model would avoid copying the user's code or values (greedy `print(6*7)` became
    `print(6 * 7)`, and `x = 41` grew a print line). A JSON answer keeps it: without it the 135M model
    repeated one key until the token cap."""
    return dataclasses.replace(params, repeat_penalty=1.0)


def response_grammar(response_format: Any) -> str | None:
    """The grammar a JSON response_format constrains the reply to (None for plain text)."""
    if not isinstance(response_format, dict) or response_format.get("type") not in (
        "json_object",
        "json_schema",
    ):
        return None
    schema = (
        (response_format.get("json_schema") or {}).get("schema")
        if response_format["type"] == "json_schema"
        else None
    )
    return json_schema_grammar(schema)


def _drop_markup(sink: MessageSink, fmt: ToolFormat, names: list[str]) -> None:
    """The last guard: tool markup that reached the text (a backend that ignores stop strings) is dropped
    from the message."""
    clean = fmt.visible_text(sink.text, names)
    if clean != sink.text.strip():
        log.warning("tool markup dropped from a reply: %r", sink.text[-200:])
    if clean != sink.text:
        sink.replace_text(clean)


def _named_calls(parsed: list[ParsedCall]) -> list[Call]:
    return [Call(new_call_id(), c.name, c.arguments) for c in parsed]
