"""Replies split as they stream: reasoning apart, no markup in content, calls found where they begin,
whatever the pieces' boundaries."""

from __future__ import annotations

import pytest

from assistd.families import family_for, family_named
from assistd.families.channels import HarmonyChannels, ReplyChannels, ThinkChannels


def feed(channels: ReplyChannels, text: str, size: int) -> tuple[str, str]:
    content = reasoning = ""
    for i in range(0, len(text), size):
        out = channels.feed(text[i : i + size])
        content += out.content
        reasoning += out.reasoning
        assert "<" not in out.content or "<think" not in out.content
    out = channels.flush()
    return content + out.content, reasoning + out.reasoning


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_think_block_is_reasoning(size: int) -> None:
    text = "<think>I should greet.\nYes.</think>\n\nHello, world!"
    content, reasoning = feed(ThinkChannels(), text, size)
    assert content.strip() == "Hello, world!"
    assert reasoning == "I should greet.\nYes."


@pytest.mark.parametrize("size", [1, 4, 50])
def test_think_opened_by_the_prompt(size: int) -> None:
    text = "Thinking about it.\n</think>\n\nThe answer is 4."
    content, reasoning = feed(ThinkChannels(thinking=True), text, size)
    assert content.strip() == "The answer is 4."
    assert reasoning.strip() == "Thinking about it."


@pytest.mark.parametrize("size", [1, 3, 100])
def test_call_marker_counts_outside_reasoning_only(size: int) -> None:
    text = '<think>maybe <tool_call> is needed</think>Let me check.<tool_call>\n{"name": "f"'
    channels = ThinkChannels(call_markers=("<tool_call>",))
    content = ""
    for i in range(0, len(text), size):
        content += channels.feed(text[i : i + size]).content
    assert channels.call_at == text.index("Let me check.") + len("Let me check.")
    assert content == "Let me check."
    assert "tool_call" in channels.reasoning


HARMONY_ANSWER = (
    "<|channel|>analysis<|message|>User greets. Answer.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello, world!"
)


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_harmony_channels(size: int) -> None:
    content, reasoning = feed(HarmonyChannels(), HARMONY_ANSWER, size)
    assert content == "Hello, world!"
    assert reasoning == "User greets. Answer."


@pytest.mark.parametrize(
    "call",
    [
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{}",
        "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{}",
    ],
)
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_harmony_call_begins_at_its_header(call: str, size: int) -> None:
    text = "<|channel|>analysis<|message|>Need weather.<|end|>" + call
    channels = HarmonyChannels()
    content, _ = feed(channels, text, size)
    assert content == ""
    assert channels.call_at == text.index("<|start|>assistant", 5)
    assert channels.reasoning == "Need weather."


def test_harmony_commentary_without_recipient_is_content() -> None:
    text = (
        "<|channel|>commentary<|message|>Checking now.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Done."
    )
    content, reasoning = feed(HarmonyChannels(), text, 4)
    assert content == "Checking now.Done."
    assert reasoning == ""


def test_families_from_templates() -> None:
    assert family_for("{{ '<|start|>' }}<|channel|>x<|message|>").name == "gpt-oss"
    assert family_for("<tool_call> <think>").name == "qwen3"
    assert family_for("<tool_call>").name == "hermes"
    assert family_for("[TOOL_CALLS] [ARGS] [THINK]").name == "magistral"
    assert family_for("[TOOL_CALLS] [ARGS]").name == "mistral-args"
    assert family_for("[TOOL_CALLS]").name == "mistral"
    assert family_for("<｜Assistant｜>").name == "deepseek-r1"
    assert family_for("{% for m in messages %}{{ m.content }}{% endfor %}").name == "generic"
    assert family_for("<tool_call>", "generic").name == "generic"


def test_unknown_chat_format_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"choose one of: gpt-oss, .*qwen3"):
        family_named("nope")


def test_constrained_prompts() -> None:
    r1 = family_named("deepseek-r1")
    assert r1.constrained("<｜Assistant｜><think>\n", answer=True) == "<｜Assistant｜><think>\n</think>\n\n"
    assert r1.constrained("<｜Assistant｜>", answer=True) == "<｜Assistant｜>"
    harmony = family_named("gpt-oss")
    prompt = harmony.constrained("<|start|>assistant", answer=True)
    assert prompt.endswith("<|channel|>final<|message|>")
    channels = harmony.channels(prompt, ())
    assert channels.feed('{"a": 1}').content == '{"a": 1}'
    assert harmony.constrained("<|start|>assistant", answer=False) == "<|start|>assistant"


def test_reasoning_effort_variables() -> None:
    assert family_named("gpt-oss").effort("high") == {"reasoning_effort": "high"}
    assert family_named("gpt-oss").effort("minimal") == {"reasoning_effort": "low"}
    assert family_named("gpt-oss").effort(None) == {}
    assert family_named("qwen3").effort("none") == {"enable_thinking": False}
    assert family_named("qwen3").effort("high") == {}


@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_block_the_prompt_opened_ends_at_the_formats_call_tag(size: int) -> None:
    text = (
        "Need weather.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f"
        '\n```json\n{"name": "x"}'
    )
    markers = ("<｜tool▁calls▁begin｜>", '{"name": "f"')
    channels = ThinkChannels(call_markers=markers, thinking=True)
    content, reasoning = feed(channels, text, size)
    assert content == "" and reasoning == "Need weather."
    assert channels.call_at == text.index("<｜tool▁calls▁begin｜>")
    # JSON alone does not end it: a thought may quote a call
    channels = ThinkChannels(call_markers=markers, thinking=True)
    content, _ = feed(channels, 'I could write {"name": "f"} here.</think>Answer.', size)
    assert channels.call_at is None and content == "Answer."


def test_harmony_reply_without_any_header_is_the_answer() -> None:
    content, reasoning = feed(HarmonyChannels(), "\nThe weather in Rome is hot.", 3)
    assert content.strip() == "The weather in Rome is hot." and reasoning == ""


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_harmony_markup_a_confused_model_writes_is_never_shown(size: int) -> None:
    # SmolLM2 under gpt-oss's template wrote this: a recipient that is not a function, markup mid-text
    text = (
        "<|channel|>final<|message|>Sunny.<|channel|>response<|message|>{ let x }"
        "<|start|>user<|message|>What is it?<|end|>to=user<|message|>Echo"
    )
    content, reasoning = feed(HarmonyChannels(), text, size)
    assert content == "Sunny.{ let x }"
    assert "<|" not in content and "<|" not in reasoning
    assert "What is it?" in reasoning and "Echo" in reasoning
