"""Model families: what a chat template says about the model behind it. A family names the tool-call
syntax the model writes (tools/calls), how it marks reasoning (families/channels.py), the markup tokens
the engine must print (llama.cpp does not print control tokens unless a request names them in
`preserved_tokens`), and the template variables that carry `reasoning_effort`.

A family is recognised from the template's text, or named in the models file (`chat_format`); a template
we do not know gets the generic tool prompt, as before."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from assistd.families.channels import HARMONY_MESSAGE, HarmonyChannels, ReplyChannels, ThinkChannels

Kwargs = dict[str, Any]
HARMONY_FINAL = "<|channel|>final" + HARMONY_MESSAGE


@dataclass(frozen=True)
class Family:
    name: str
    tools: str  # the tool-call format (tools.calls.FORMATS)
    detect: Callable[[str], bool]
    about: str  # one line for `assistd models list` and doctor
    think: tuple[str, str] | None = None  # the reasoning block's open and close markers
    harmony: bool = False  # reasoning and calls in harmony's channels
    preserved: tuple[str, ...] = ()  # control tokens of its markup: the engine must print them
    effort: Callable[[str | None], Kwargs] = field(default=lambda _e: {})

    def channels(self, prompt: str, call_markers: tuple[str, ...]) -> ReplyChannels:
        """A fresh splitter for one reply to `prompt`."""
        if self.harmony:
            if prompt.endswith(HARMONY_MESSAGE):  # the prompt opened a message: its text comes first
                return HarmonyChannels(call_markers=call_markers, in_header=False, channel="final")
            return HarmonyChannels(call_markers=call_markers)
        if self.think:
            opened = prompt.rstrip().endswith(self.think[0])
            return ThinkChannels(
                call_markers=call_markers, open=self.think[0], close=self.think[1], thinking=opened
            )
        return ReplyChannels(call_markers=call_markers)

    def constrained(self, prompt: str, answer: bool) -> str:
        """The prompt for a reply under a grammar (JSON, forced calls, forced code), which leaves the model
        no room to reason: a think block the template opened is closed first, and a harmony answer is
        written in the final channel (`answer`; a forced harmony call writes its own header)."""
        if self.think and prompt.rstrip().endswith(self.think[0]):
            return f"{prompt.rstrip()}\n{self.think[1]}\n\n"
        if self.harmony and answer:
            return prompt + HARMONY_FINAL
        return prompt

    @property
    def format(self) -> Any:
        """Its tool-call format (a tools.calls ToolFormat)."""
        from assistd.tools.calls import FORMATS

        return FORMATS[self.tools]


def _harmony_effort(effort: str | None) -> Kwargs:
    """gpt-oss's template writes `Reasoning: {{ reasoning_effort }}` (low, medium, high; medium unset)."""
    if effort is None:
        return {}
    level = {"none": "low", "minimal": "low", "xhigh": "high", "max": "high"}.get(effort, effort)
    return {"reasoning_effort": level}


def _qwen3_effort(effort: str | None) -> Kwargs:
    """Qwen3's hybrid templates think unless `enable_thinking` is false (none, minimal)."""
    return {"enable_thinking": False} if effort in ("none", "minimal") else {}


def _v31_effort(effort: str | None) -> Kwargs:
    """DeepSeek V3.1's template opens the think block only when `thinking` is true (its default: not)."""
    return {} if effort is None else {"thinking": effort not in ("none", "minimal")}


HARMONY_TOKENS = ("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>")  # not its EOGs
MISTRAL_TOKENS = ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]")

FAMILIES: tuple[Family, ...] = (
    Family(
        "gpt-oss",
        tools="harmony",
        detect=lambda t: "<|channel|>" in t and "<|message|>" in t,
        about="OpenAI gpt-oss (harmony: analysis/commentary/final channels, to=functions.NAME calls)",
        harmony=True,
        preserved=HARMONY_TOKENS,
        effort=_harmony_effort,
    ),
    Family(
        "deepseek-v3.1",
        tools="deepseek-v3.1",
        detect=lambda t: (
            "<｜tool▁calls▁begin｜>" in t
            and "thinking" in t
            and "<｜Assistant｜>" in t
            and "function<｜tool▁sep｜>" not in t
        ),
        about="DeepSeek V3.1 (<think> when `thinking`, NAME<｜tool▁sep｜>ARGS calls)",
        think=("<think>", "</think>"),
        effort=_v31_effort,
    ),
    Family(
        "deepseek-r1",
        tools="deepseek-r1",
        detect=lambda t: "<｜Assistant｜>" in t,
        about="DeepSeek-R1 and its distills (<think>, <｜tool▁calls▁begin｜> calls)",
        think=("<think>", "</think>"),
    ),
    Family(
        "magistral",
        tools="mistral-args",
        detect=lambda t: "[TOOL_CALLS]" in t and "[THINK]" in t,
        about="Magistral ([THINK] reasoning, [TOOL_CALLS]NAME[ARGS]{...} calls)",
        think=("[THINK]", "[/THINK]"),
        preserved=MISTRAL_TOKENS,
    ),
    Family(
        "mistral-args",
        tools="mistral-args",
        detect=lambda t: "[TOOL_CALLS]" in t and "[ARGS]" in t,
        about="Mistral Small 3.2 and later ([TOOL_CALLS]NAME[ARGS]{...} calls)",
        preserved=MISTRAL_TOKENS,
    ),
    Family(
        "mistral",
        tools="mistral",
        detect=lambda t: "[TOOL_CALLS]" in t or "[AVAILABLE_TOOLS]" in t,
        about="Mistral Nemo, Small 3.1 and earlier ([TOOL_CALLS][{...}] calls)",
        preserved=MISTRAL_TOKENS,
    ),
    Family(
        "glm-4.5",
        tools="generic",
        detect=lambda t: "<arg_key>" in t,
        about="GLM-4.5 (<think> reasoning; its <arg_key> call syntax is not parsed: the generic tool prompt)",
        think=("<think>", "</think>"),
    ),
    Family(
        "qwen3",
        tools="hermes",
        detect=lambda t: "<tool_call>" in t and "<think>" in t,
        about="Qwen3 (<think> reasoning, <tool_call> JSON calls)",
        think=("<think>", "</think>"),
        effort=_qwen3_effort,
    ),
    Family(
        "hermes",
        tools="hermes",
        detect=lambda t: "<tool_call>" in t,
        about="Hermes / Qwen2.5 (<tool_call> JSON calls)",
    ),
    Family(
        "llama3",
        tools="llama3",
        detect=lambda t: (
            "<|start_header_id|>" in t and ("<|python_tag|>" in t or "ipython" in t or "tools" in t)
        ),
        about="Llama 3.1-3.3 (JSON calls with `parameters`)",
    ),
    Family(
        "generic",
        tools="generic",
        detect=lambda t: True,
        about="a template that knows no tools (e.g. SmolLM2, Gemma): the generic tool prompt",
    ),
)
BY_NAME = {f.name: f for f in FAMILIES}
CHOICES = tuple(BY_NAME)


class UnknownFamily(ValueError):
    pass


def family_named(name: str) -> Family:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownFamily(f"unknown chat_format {name!r}; choose one of: {', '.join(CHOICES)}") from None


def family_for(chat_template: str | None, chat_format: str | None = None) -> Family:
    """The family a models-file `chat_format` names, else the one the template shows."""
    if chat_format:
        return family_named(chat_format)
    template = chat_template or ""
    return next(f for f in FAMILIES if f.detect(template))
