"""Tool-call syntaxes where the function's name stands outside its JSON arguments, each as its family's
models write it (the forms llama.cpp's chat tests check):

- deepseek-r1:   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{...}\\n```
                 <｜tool▁call▁end｜>…<｜tool▁calls▁end｜>
- deepseek-v3.1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>…
- mistral-args:  [TOOL_CALLS]NAME[ARGS]{...} per call (Mistral Small 3.2, Magistral)
- mistral:       [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...] (Nemo, Small 3.1)
- harmony:       <|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...} (gpt-oss; one
                 call per message, `<|call|>` ends generation)

Templates that take `tools` get them and the run's earlier calls as structured `tool_calls` (the way each
template writes them back); otherwise the format's own instruction and plain-text history, as for the
others (formats.py)."""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from collections.abc import Iterable

from assistd.tools.calls import jsonscan
from assistd.tools.calls.formats import BaseFormat, _plain_results, compile_arguments, json_markers
from assistd.tools.calls.gbnf import GrammarBuilder, literal
from assistd.tools.calls.types import ParsedCall, ParsedReply

NAME = r"([A-Za-z0-9_.\-]+)"


class NamedArgsFormat(BaseFormat):
    """A call is `call_open(NAME)` + a JSON object + `call_close`; the calls of a reply sit between
    `start_marker` and `end_marker`, `separator` apart."""

    structured_history = True
    end_marker = ""
    separator = ""
    call_close = ""
    call_lead = ""  # the part of every call's opening that is the start marker (it is repeated per call)
    call_pattern: re.Pattern[str]  # matches a call's opening, group 1 the name, ending where the JSON starts
    close_pattern = re.compile(r"")

    @abstractmethod
    def call_open(self, name: str) -> str:
        """What a call to `name` opens with, up to its JSON arguments."""

    def instruction(self, functions: list[dict]) -> str:
        sigs = "\n".join(
            json.dumps({"type": "function", "function": f}, ensure_ascii=False) for f in functions
        )
        example = self.render_calls([("function_name", '{"argument": "value"}')])
        return (
            "# Tools\n\nYou may call one or more functions to assist with the user query. The functions:\n"
            f"{sigs}\n\nTo call functions, write exactly:\n{example}\n"
            "If no function is needed, answer the user directly."
        )

    def render_calls(self, calls: list[tuple[str, str]]) -> str:
        body = self.separator.join(f"{self.call_open(n)}{a}{self.call_close}" for n, a in calls)
        return f"{self.start_marker}{body}{self.end_marker}"

    def render_results(self, results: list[tuple[str, str]]) -> str:
        return _plain_results(results)

    def parse(self, text: str) -> ParsedReply:
        calls: list[ParsedCall] = []
        kept: list[str] = []
        last = 0
        for m in self.call_pattern.finditer(text):
            if m.start() < last:
                continue
            found = jsonscan.decode_at(text, m.end())
            if not found or not isinstance(found[0], dict):
                continue  # malformed: it stays in the text, nothing is silently dropped
            value, end = found
            close = self.close_pattern.match(text, end)
            kept.append(text[last : m.start()])
            calls.append(ParsedCall(m.group(1), json.dumps(value, ensure_ascii=False)))
            last = close.end() if close else end
        kept.append(text[last:])
        rest = "".join(kept)
        for marker in self.tag_markers:
            rest = rest.replace(marker, "")
        return ParsedReply(text=rest.strip(), calls=calls)

    def _call_rule(self, b: GrammarBuilder, fn: dict) -> str:
        fname = fn["name"]
        args = compile_arguments(b, fn.get("parameters"), fname)
        close = f" {literal(self.call_close)}" if self.call_close else ""
        opening, lead = self.call_open(fname), self.call_lead
        head = f"{literal(lead)} {literal(opening[len(lead) :])}" if lead else literal(opening)
        return b.add(f"call-{fname}", f"{head} {args}{close}")

    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str:
        sep = f"{literal(self.separator)} " if self.separator else ""
        head = "" if continuation else f"{literal(self.start_marker)} "
        parts = [head + seq[0]] + [f"{sep}{c}" for c in seq[1:]]
        if more:
            call, n = more
            parts.append(f"( {sep}{call} ){{0,{n}}}")
        if self.end_marker:
            parts.append(literal(self.end_marker))
        return " ".join(parts)


DS_CALLS_BEGIN, DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL_BEGIN, DS_CALL_END, DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
DS_CALLS_ALIAS = "<｜tool▁calls｜>"  # some R1 distills open their calls so (llama.cpp accepts it too)
DS_TAGS = (
    DS_CALLS_BEGIN,
    DS_CALLS_END,
    DS_CALL_BEGIN,
    DS_CALL_END,
    DS_SEP,
    DS_CALLS_ALIAS,
    "<｜tool▁outputs▁begin｜>",
)


class DeepSeekR1Format(NamedArgsFormat):
    name = "deepseek-r1"
    start_marker = DS_CALLS_BEGIN
    end_marker = DS_CALLS_END
    separator = "\n"
    call_close = f"\n```{DS_CALL_END}"
    tag_markers = DS_TAGS
    structured_history = False  # its template concatenates `arguments` as text: calls are shown as text
    call_pattern = re.compile(
        f"(?:{re.escape(DS_CALL_BEGIN)}|{re.escape(DS_CALLS_ALIAS)})"
        + r"\s*(?:function)?\s*"
        + re.escape(DS_SEP)
        + r"\s*"
        + NAME
        + r"\s*(?:```(?:json)?)?\s*"
    )
    close_pattern = re.compile(r"\s*(?:```)?\s*" + re.escape(DS_CALL_END))

    def call_open(self, name: str) -> str:
        return f"{DS_CALL_BEGIN}function{DS_SEP}{name}\n```json\n"

    def call_markers(self, names: Iterable[str]) -> tuple[str, ...]:
        return (DS_CALLS_BEGIN, DS_CALL_BEGIN, DS_CALLS_ALIAS, *json_markers(names))


class DeepSeekV31Format(DeepSeekR1Format):
    name = "deepseek-v3.1"
    separator = ""
    call_close = DS_CALL_END
    call_pattern = re.compile(re.escape(DS_CALL_BEGIN) + r"\s*" + NAME + r"\s*" + re.escape(DS_SEP) + r"\s*")
    close_pattern = re.compile(r"\s*" + re.escape(DS_CALL_END))

    def call_open(self, name: str) -> str:
        return f"{DS_CALL_BEGIN}{name}{DS_SEP}"


class MistralArgsFormat(NamedArgsFormat):
    name = "mistral-args"
    start_marker = call_lead = "[TOOL_CALLS]"
    call_id_length = 9
    tag_markers = ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]")
    call_pattern = re.compile(r"\[TOOL_CALLS\]\s*" + NAME + r"\s*(?:\[CALL_ID\][A-Za-z0-9]*\s*)?\[ARGS\]\s*")

    def call_open(self, name: str) -> str:
        return f"[TOOL_CALLS]{name}[ARGS]"

    def render_calls(self, calls: list[tuple[str, str]]) -> str:
        return "".join(f"{self.call_open(n)}{a}" for n, a in calls)

    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str:
        # every call repeats [TOOL_CALLS]: a continuation resumes after the first one's marker
        first = _after_lead(b, seq[0], self.call_lead) if continuation else seq[0]
        parts = [first, *seq[1:]]
        if more:
            call, n = more
            parts.append(f"( {call} ){{0,{n}}}")
        return " ".join(parts)


class MistralFormat(BaseFormat):
    """[TOOL_CALLS] then a JSON list of {"name", "arguments"(, "id")} objects."""

    name = "mistral"
    start_marker = "[TOOL_CALLS]"
    tag_markers = ("[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]")
    structured_history = True
    call_id_length = 9

    def instruction(self, functions: list[dict]) -> str:
        sigs = json.dumps([{"type": "function", "function": f} for f in functions], ensure_ascii=False)
        return (
            f"[AVAILABLE_TOOLS]{sigs}[/AVAILABLE_TOOLS]\nTo call functions, write "
            '[TOOL_CALLS][{"name": "function_name", "arguments": {...}}]; else answer directly.'
        )

    def render_calls(self, calls: list[tuple[str, str]]) -> str:
        items = ", ".join(f'{{"name": {json.dumps(n)}, "arguments": {a}}}' for n, a in calls)
        return f"[TOOL_CALLS][{items}]"

    def render_results(self, results: list[tuple[str, str]]) -> str:
        return _plain_results(results)

    def parse(self, text: str) -> ParsedReply:
        at = text.find(self.start_marker)
        start = at + len(self.start_marker) if at >= 0 else 0
        for i in range(start, len(text)):
            if text[i] in "[{":
                found = jsonscan.decode_at(text, i)
                calls = jsonscan.calls_of(found[0]) if found else None
                if found and calls:
                    head = text[: at if at >= 0 else i]
                    return ParsedReply(text=(head + text[found[1] :]).strip(), calls=calls)
                break
            if not text[i].isspace():
                break
        return ParsedReply(text=text.replace(self.start_marker, "").strip(), calls=[])

    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str:
        sep = f'"," {b.primitive("sp")}'
        head = '"["' if continuation else '"[TOOL_CALLS]" "["'
        parts = [head, seq[0]] + [f"{sep} {c}" for c in seq[1:]]
        if more:
            call, n = more
            parts.append(f"( {sep} {call} ){{0,{n}}}")
        parts.append('"]"')
        return " ".join(parts)


HARMONY_CALL = "<|channel|>commentary to="


class HarmonyFormat(NamedArgsFormat):
    """gpt-oss: a call is a commentary message to `functions.NAME`; the engine stops at `<|call|>`, so a
    reply holds one call (parallel calls come one turn after another)."""

    name = "harmony"
    start_marker = call_lead = HARMONY_CALL
    tag_markers = ()
    single_call = True
    call_pattern = re.compile(
        r"(?:<\|start\|>assistant)?\s*(?:<\|channel\|>commentary\s*)?to=functions\."
        + NAME
        + r"[^<]*?(?:<\|channel\|>[^<]*)?(?:<\|constrain\|>[^<]*)?<\|message\|>"
    )
    close_pattern = re.compile(r"\s*(?:<\|call\|>)?")

    def call_open(self, name: str) -> str:
        return f"{HARMONY_CALL}functions.{name} <|constrain|>json<|message|>"

    def call_markers(self, names: Iterable[str]) -> tuple[str, ...]:
        return ()  # the harmony channels see a call in its header (families/channels.py)

    def head(self, before: str) -> str:
        start = "<|start|>assistant" if before.endswith(("<|end|>", "<|call|>")) else ""
        return f"{before}{start}{self.start_marker}"

    def _reply(
        self, b: GrammarBuilder, seq: list[str], continuation: bool, more: tuple[str, int] | None
    ) -> str:
        return _after_lead(b, seq[0], self.call_lead) if continuation else seq[0]  # one call per message


def _after_lead(b: GrammarBuilder, rule: str, lead: str) -> str:
    """`rule` (a call, or an alternation of calls) without the lead every call opens with: what follows
    a start marker that is the lead itself."""
    body = b.rules[rule]
    head = literal(lead)
    if body.startswith(head):
        return b.add(f"{rule}-rest", body[len(head) :].strip())
    alts = [_after_lead(b, alt.strip(), lead) for alt in body.split(" | ")]
    return b.add(f"{rule}-rest", " | ".join(alts))
