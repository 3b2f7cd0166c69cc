"""Tool-call formats per chat-template family: how tools and tool history enter the prompt, how a reply is
parsed into calls, and the grammar that forces a reply to be well-formed calls.

- hermes  (ChatML / Hermes / Qwen): `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
  one block per call.
- llama3  (Llama 3.1+ JSON tool calling): `{"name": ..., "parameters": {...}}`, several separated by `;` or
  a newline, optionally after `<|python_tag|>`.
- generic (templates that know nothing of tools, e.g. SmolLM2's plain ChatML): one
  `<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>` list, the form SmolLM2 was tuned on.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from assistd.tools.calls import jsonscan
from assistd.tools.calls.gbnf import GrammarBuilder, SchemaCompiler, UnsupportedSchema, literal
from assistd.tools.calls.types import ParsedCall, ParsedReply

CALL_OPEN = '{"name":'  # every call object starts exactly so: it lets a grammar resume after a marker
TAG_MARKERS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
RESULTS_NUDGE = "Now answer the user in plain words, using these results."
REASONING_KEYS = ("thinking", "reasoning_content")  # a tool turn's reasoning, as templates read it


class BaseFormat(ABC):
    name = ""
    start_marker = ""
    arguments_key = "arguments"
    native_template_tools = True  # pass `tools` to a template that takes them (the model was trained so)
    tag_markers: tuple[str, ...] = TAG_MARKERS  # the format's own tool markup
    # a template that takes tools gets the run's calls as `tool_calls` (arguments as objects) and results as
    # `tool` messages, and writes them back its own way (else: calls as text in the assistant's content)
    structured_history = False
    single_call = False  # one call per reply (harmony)
    call_id_length = 0  # templates that insist on ids of this many letters and digits (Mistral: 9)

    def stop_markers(self, names: Iterable[str]) -> tuple[str, ...]:
        """Text that opens tool markup, for a run whose tools have these names: the format's tags, and the
        JSON of a call to one of them. When a generation offers no tools these are its stop strings: a call
        there could not run, and tool syntax never belongs in message text. (JSON that calls nothing the
        run has, such as an answer with a "name" key, is text.)"""
        return (*self.tag_markers, *json_markers(names))

    def call_markers(self, names: Iterable[str]) -> tuple[str, ...]:
        """Text that opens a call when tools are offered: the format's own marker, and a call's JSON written
        without it (the engine then finishes it in the format's own syntax, under the grammar)."""
        return tuple(dict.fromkeys((self.start_marker, *json_markers(names))))

    # ----------------------------------------------------------------------------------- prompt side
    def prepare(
        self, messages: list[dict], tools: list[dict], template_takes_tools: bool
    ) -> tuple[list[dict], list[dict] | None]:
        """The messages (and tools for the template) of a prompt. Without tools, earlier calls and their
        results are shown as plain text: tool syntax in a prompt that offers no tools only teaches the model
        to write calls that cannot run."""
        if not tools:
            return _plain_history(messages), None
        native = template_takes_tools and self.native_template_tools
        out = self._rewrite_history(messages, keep_tool_role=native)
        if native:
            return out, tools
        functions = [t.get("function", t) for t in tools]
        return _with_system(out, self.instruction(functions)), None

    @abstractmethod
    def instruction(self, functions: list[dict]) -> str: ...

    @abstractmethod
    def render_calls(self, calls: list[tuple[str, str]]) -> str: ...

    @abstractmethod
    def render_results(self, results: list[tuple[str, str]]) -> str: ...

    def _rewrite_history(self, messages: list[dict], keep_tool_role: bool) -> list[dict]:
        out: list[dict] = []
        names: dict[str, str] = {}  # tool_call_id -> function name
        pending: list[tuple[str, str]] = []
        later: dict[str, dict] = {}  # single_call formats: calls shown just before their results

        def flush() -> None:
            if pending:
                out.append({"role": "user", "content": self.render_results(pending)})
                pending.clear()

        for message in messages:
            role = message.get("role")
            content = _text(message.get("content"))
            if role == "tool":
                call_id = message.get("tool_call_id") or ""
                if keep_tool_role and self.structured_history:
                    call_id = short_id(call_id, self.call_id_length)
                    if call_id in later:
                        out.append({"role": "assistant", "content": "", "tool_calls": [later.pop(call_id)]})
                fn_name = names.get(call_id, "")
                if keep_tool_role:
                    out.append(
                        {
                            **message,
                            "tool_call_id": call_id,
                            "content": content,
                            "name": message.get("name") or fn_name,
                        }
                    )
                else:
                    pending.append((fn_name, content))
                continue
            flush()
            if (
                role == "assistant"
                and message.get("tool_calls")
                and keep_tool_role
                and self.structured_history
            ):
                calls = _structured(message["tool_calls"], self.call_id_length)
                for call in calls:
                    names[call["id"]] = call["function"].get("name", "")
                if self.single_call:  # one call per message: the others come before their results
                    later.update({c["id"]: c for c in calls[1:]})
                    calls = calls[:1]
                out.append({**message, "content": content, "tool_calls": calls})
                continue
            if role == "assistant" and message.get("tool_calls"):
                calls = []
                for call in message["tool_calls"]:
                    fn = call.get("function") or {}
                    names[call.get("id") or ""] = fn.get("name", "")
                    calls.append((fn.get("name", ""), _arguments_json(fn.get("arguments"))))
                rendered = self.render_calls(calls)
                text = f"{content}\n{rendered}" if content.strip() else rendered
                thought = {k: message[k] for k in REASONING_KEYS if k in message}  # Qwen3 reads it back
                out.append({"role": "assistant", "content": text, **thought})
                continue
            clean = {k: v for k, v in message.items() if k not in ("tool_calls", "tool_call_id")}
            out.append({**clean, "content": content})
        flush()
        return out

    # ----------------------------------------------------------------------------------- reply side
    @abstractmethod
    def parse(self, text: str) -> ParsedReply: ...

    def visible_text(self, text: str, names: Iterable[str]) -> str:
        """`text` as message text: it ends where any tool markup begins, as a generation with these markers
        as stop strings would have ended."""
        cuts = [at for at in (text.find(m) for m in self.stop_markers(names)) if at >= 0]
        return (text[: min(cuts)] if cuts else text).strip()

    def head(self, before: str) -> str:
        """What to append to the prompt, after the text the model wrote before its call, to generate the
        rest of the call under grammar(..., continuation=True)."""
        return before + self.start_marker

    def grammar(
        self,
        functions: list[dict],
        *,
        name: str | None = None,
        parallel: bool = True,
        continuation: bool = False,
        names: list[str] | None = None,
        all_functions: bool = False,
        max_calls: int = 8,
    ) -> str:
        """GBNF for a reply made of tool calls only.

        name: only that function may be called. names / all_functions: exactly one call to each named
        function (all of them), in that order. parallel: 1..max_calls calls, else exactly one.
        continuation: the rest of the reply after `start_marker`."""
        by_name = {f["name"]: f for f in functions}
        if all_functions:
            names = list(by_name)
        if names:
            missing = [n for n in names if n not in by_name]
            if missing:
                raise ValueError(f"no function named {missing[0]!r}")
        elif name is not None:
            if name not in by_name:
                raise ValueError(f"no function named {name!r}")
            by_name = {name: by_name[name]}
        if not by_name:
            raise ValueError("no function to call")
        b = GrammarBuilder()
        rules = {n: self._call_rule(b, f) for n, f in by_name.items()}
        if names:
            return b.text(self._reply(b, [rules[n] for n in names], continuation, more=None))
        any_call = (
            next(iter(rules.values())) if len(rules) == 1 else b.add("call", " | ".join(rules.values()))
        )
        more = (any_call, max_calls - 1) if parallel and max_calls > 1 else None
        return b.text(self._reply(b, [any_call], continuation, more))

    def _call_rule(self, b: GrammarBuilder, fn: dict) -> str:
        fname = fn["name"]
        args = compile_arguments(b, fn.get("parameters"), fname)
        sp = b.primitive("sp")
        body = (
            f"{literal(CALL_OPEN)} {sp} {literal(json.dumps(fname))} {literal(',')} {sp} "
            f'{literal(json.dumps(self.arguments_key) + ":")} {sp} {args} "}}"'
        )
        return b.add(f"call-{fname}", body)

    @abstractmethod
    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str: ...


# ------------------------------------------------------------------------------------------- hermes
class HermesFormat(BaseFormat):
    name = "hermes"
    start_marker = "<tool_call>"

    def instruction(self, functions: list[dict]) -> str:
        sigs = "\n".join(
            json.dumps({"type": "function", "function": f}, ensure_ascii=False) for f in functions
        )
        return (
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{sigs}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        )

    def render_calls(self, calls: list[tuple[str, str]]) -> str:
        return "\n".join(
            f'<tool_call>\n{{"name": {json.dumps(n)}, "arguments": {a}}}\n</tool_call>' for n, a in calls
        )

    def render_results(self, results: list[tuple[str, str]]) -> str:
        return "\n".join(f"<tool_response>\n{content}\n</tool_response>" for _, content in results)

    def parse(self, text: str) -> ParsedReply:
        return _parse_blocks(text, allow_list=True)

    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str:
        nl = '"\\n"?'

        def block(call: str) -> str:
            return f'"<tool_call>" {nl} {call} {nl} "</tool_call>"'

        first = f'{nl} {seq[0]} {nl} "</tool_call>"' if continuation else block(seq[0])
        parts = [first] + [f"{nl} {block(c)}" for c in seq[1:]]
        if more:
            call, n = more
            parts.append(f"( {nl} {block(call)} ){{0,{n}}}")
        return " ".join(parts)


# ------------------------------------------------------------------------------------------- llama 3
class Llama3Format(BaseFormat):
    name = "llama3"
    start_marker = '{"name"'
    arguments_key = "parameters"
    tag_markers = ("<|python_tag|>",)

    def call_markers(self, names: Iterable[str]) -> tuple[str, ...]:
        return (self.start_marker, "<|python_tag|>")  # its calls are bare JSON: any one opens a call

    def instruction(self, functions: list[dict]) -> str:
        sigs = "\n\n".join(json.dumps({"type": "function", "function": f}, indent=4) for f in functions)
        return (
            "Given the following functions, please respond with a JSON for a function call with its proper "
            "arguments that best answers the given prompt.\n\n"
            'Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
            "value}. Do not use variables. To call several functions, put one JSON per line.\n\n"
            f"{sigs}"
        )

    def render_calls(self, calls: list[tuple[str, str]]) -> str:
        return "\n".join(f'{{"name": {json.dumps(n)}, "parameters": {a}}}' for n, a in calls)

    def render_results(self, results: list[tuple[str, str]]) -> str:
        return "\n".join(f"Output of {n or 'the function'}: {content}" for n, content in results)

    def parse(self, text: str) -> ParsedReply:
        text = text.replace("<|python_tag|>", "")
        calls: list[ParsedCall] = []
        kept: list[str] = []
        i = last = 0
        while i < len(text):
            if text[i] in "{[":
                found = jsonscan.decode_at(text, i)
                got = jsonscan.calls_of(found[0]) if found else None
                if found and got:
                    kept.append(text[last:i])
                    calls.extend(got)
                    i = last = found[1]
                    continue
            i += 1
        kept.append(text[last:])
        if not calls:
            return ParsedReply(text=text.strip(), calls=[])
        rest = "".join(_strip_separator(k) for k in kept)
        return ParsedReply(text=rest.strip(), calls=calls)

    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str:
        sep = b.add("call-separator", '";" " "? | "\\n"')
        first = seq[0]
        if continuation:  # the marker '{"name"' is written: resume inside the first call
            first = _after_prefix(b, first, self.start_marker)
        parts = [first] + [f"{sep} {c}" for c in seq[1:]]
        if more:
            call, n = more
            parts.append(f"( {sep} {call} ){{0,{n}}}")
        return " ".join(parts)


# ------------------------------------------------------------------------------------------- generic
class GenericFormat(BaseFormat):
    name = "generic"
    start_marker = "<tool_call>"
    native_template_tools = False  # we do not know how the template renders tools: always our own prompt

    def instruction(self, functions: list[dict]) -> str:
        sigs = json.dumps(functions, ensure_ascii=False)
        return (
            "You are an expert in composing functions. You are given a question and a set of possible "
            "functions. Based on the question, you will need to make one or more function/tool calls to "
            "achieve the purpose.\n\n"
            f"You have access to the following tools:\n<tools>{sigs}</tools>\n\n"
            "To call functions, reply with only the calls in this format and no other text:\n"
            '<tool_call>[{"name": "func_name1", "arguments": {"argument1": "value1"}}, '
            '{"name": "func_name2", "arguments": {"argument1": "value1"}}]</tool_call>\n'
            "Make sure each argument has the type its parameter asks for. "
            "If no function is needed, answer the user directly."
        )

    def render_calls(self, calls: list[tuple[str, str]]) -> str:
        items = ", ".join(f'{{"name": {json.dumps(n)}, "arguments": {a}}}' for n, a in calls)
        return f"<tool_call>[{items}]</tool_call>"

    def render_results(self, results: list[tuple[str, str]]) -> str:
        # Plain text, not markup: small models echo a <tool_response> block instead of answering.
        return _plain_results(results)

    def parse(self, text: str) -> ParsedReply:
        reply = _parse_blocks(text, allow_list=True)
        if reply.calls or "<tool_call>" in text:
            return reply
        value = jsonscan.loads(text)  # a reply that is nothing but the call(s)
        calls = jsonscan.calls_of(value) if value is not None else None
        return ParsedReply(text="", calls=calls) if calls else ParsedReply(text=text.strip(), calls=[])

    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str:
        nl = '"\\n"?'
        sep = f'"," {nl} {b.primitive("sp")}'
        head = f'{nl} "[" {nl}' if continuation else f'"<tool_call>" {nl} "[" {nl}'
        parts = [head, seq[0]] + [f"{sep} {c}" for c in seq[1:]]
        if more:
            call, n = more
            parts.append(f"( {sep} {call} ){{0,{n}}}")
        parts.append(f'{nl} "]</tool_call>"')
        return " ".join(parts)


# ------------------------------------------------------------------------------------------- shared
def compile_arguments(b: GrammarBuilder, parameters: dict | None, fname: str) -> str:
    """The rule for a function's arguments object (raises UnsupportedSchema)."""
    schema = args_schema(parameters)
    return SchemaCompiler(b, schema, prefix=f"{fname}-args").visit(schema)


def args_schema(parameters: Any) -> dict:
    if parameters is None or parameters == {}:
        return {"type": "object", "properties": {}, "additionalProperties": False}
    if not isinstance(parameters, dict):
        raise UnsupportedSchema(type(parameters).__name__, "", "parameters must be a JSON schema object")
    kind = parameters.get("type", "object")
    if kind != "object":
        raise UnsupportedSchema(f"type: {kind}", "", "function parameters must be an object schema")
    return {**parameters, "type": "object"}


_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|$)", re.DOTALL)


def _parse_blocks(text: str, allow_list: bool) -> ParsedReply:
    calls: list[ParsedCall] = []
    kept: list[str] = []
    last = 0
    for m in _BLOCK.finditer(text):
        value = jsonscan.loads(m.group(1))
        got = (
            jsonscan.calls_of(value)
            if value is not None and (allow_list or isinstance(value, dict))
            else None
        )
        if got is None:
            continue  # malformed: the block stays in the text, nothing is silently dropped
        kept.append(text[last : m.start()])
        calls.extend(got)
        last = m.end()
    kept.append(text[last:])
    return ParsedReply(text="".join(kept).strip(), calls=calls)


def _strip_separator(piece: str) -> str:
    stripped = piece.strip()
    return "" if stripped in ("", ";", ",") else piece


def _after_prefix(b: GrammarBuilder, rule: str, prefix: str) -> str:
    """A rule for `rule` minus a literal prefix: every call rule starts with CALL_OPEN, an alternation of them
    is rewritten alternative by alternative."""
    assert prefix == CALL_OPEN[: len(prefix)]
    body = b.rules[rule]
    alts = [a.strip() for a in body.split(" | ")] if not body.startswith(literal(CALL_OPEN)) else [rule]
    rests = []
    for alt in alts:
        call_body = b.rules[alt]
        head = literal(CALL_OPEN)
        assert call_body.startswith(head), call_body
        rests.append(f"{literal(CALL_OPEN[len(prefix) :])} {call_body[len(head) :].strip()}")
    return b.add(f"{rule}-rest", " | ".join(rests))


def json_markers(names: Iterable[str]) -> tuple[str, ...]:
    """The opening of a call's JSON to each of `names`, as models write it without the format's tags; where
    one contains another the longer comes first (llama-cpp-python stops at the first listed stop it finds)."""
    out: list[str] = []
    for name in dict.fromkeys(names):
        quoted = json.dumps(name)
        out += [f'[{{"name": {quoted}', f'[{{"name":{quoted}', f'{{"name": {quoted}', f'{{"name":{quoted}']
    return tuple(out)


def _plain_results(results: list[tuple[str, str]]) -> str:
    body = "\n".join(f"Result of {n or 'the tool'}: {c}" for n, c in results)
    return f"{body}\n\n{RESULTS_NUDGE}"


def _plain_history(messages: list[dict]) -> list[dict]:
    """Messages with tool calls and results in plain words: code that ran as a ```python block of the
    assistant, results as the user's note (merged into the user's turn, for templates that insist on
    alternating roles). No call syntax of any format is left."""
    out: list[dict] = []
    names: dict[str, str] = {}  # tool_call_id -> function name
    pending: list[tuple[str, str]] = []

    def flush() -> None:
        if not pending:
            return
        note = _plain_results(pending)
        pending.clear()
        if out and out[-1].get("role") == "user":
            out[-1] = {**out[-1], "content": f"{out[-1]['content']}\n\n{note}"}
        else:
            out.append({"role": "user", "content": note})

    for message in messages:
        role = message.get("role")
        content = _text(message.get("content"))
        if role == "tool":
            pending.append((message.get("name") or names.get(message.get("tool_call_id") or "", ""), content))
            continue
        flush()
        clean = {k: v for k, v in message.items() if k not in ("tool_calls", "tool_call_id")}
        if role == "assistant" and message.get("tool_calls"):
            shown = [content] if content.strip() else []
            for call in message["tool_calls"]:
                fn = call.get("function") or {}
                names[call.get("id") or ""] = fn.get("name", "")
                code = _code_of(fn) if fn.get("name") == "code_interpreter" else ""
                if code.strip():
                    shown.append(f"```python\n{code}\n```")
            if shown:
                out.append({**clean, "content": "\n".join(shown)})
            continue
        out.append({**clean, "content": content})
    flush()
    return out


def _structured(calls: list[dict], id_length: int) -> list[dict]:
    """Calls as chat templates read them: arguments as an object (most templates apply `tojson`)."""
    out = []
    for call in calls:
        fn = call.get("function") or {}
        arguments = json.loads(_arguments_json(fn.get("arguments")))
        arguments = arguments if isinstance(arguments, dict) else {}
        call_id = short_id(call.get("id") or "", id_length)
        out.append({**call, "id": call_id, "function": {**fn, "arguments": arguments}})
    return out


def short_id(call_id: str, length: int) -> str:
    """A call id of `length` letters and digits, the same for the same id (0: the id itself)."""
    if not length or (len(call_id) == length and call_id.isalnum()):
        return call_id
    import hashlib

    digest = hashlib.sha256(call_id.encode()).hexdigest()
    return digest[:length]


def _code_of(fn: dict) -> str:
    value = jsonscan.loads(fn["arguments"]) if isinstance(fn.get("arguments"), str) else fn.get("arguments")
    code = value.get("code") if isinstance(value, dict) else None
    return code if isinstance(code, str) else ""


def _with_system(messages: list[dict], instruction: str) -> list[dict]:
    if messages and messages[0].get("role") == "system":
        first = messages[0]
        content = _text(first.get("content"))
        merged = f"{content}\n\n{instruction}" if content.strip() else instruction
        return [{**first, "content": merged}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _arguments_json(arguments: Any) -> str:
    if isinstance(arguments, dict):
        return json.dumps(arguments, ensure_ascii=False)
    if isinstance(arguments, str):
        value = jsonscan.loads(arguments) if arguments.strip() else {}
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False)
        return json.dumps(arguments, ensure_ascii=False)  # not JSON: show it as a string, never drop it
    return "{}"
