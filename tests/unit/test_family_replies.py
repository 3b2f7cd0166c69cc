"""Every reply in the corpus (tests/family_replies.py: what these models really write, from llama.cpp's
chat tests) read as the server reads it: streamed in small pieces through the family's channels, the call
parsed by the family's format from where the channels say it begins. Content, reasoning and calls must be
exactly what the corpus says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistd.families import family_for
from tests.family_replies import FAMILIES

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
PARSED = [
    "gpt-oss",
    "qwen3",
    "deepseek-r1",
    "deepseek-v3.1",
    "mistral-small-3.2",
    "mistral-nemo",
    "magistral",
]
PARSED += ["llama-3.3"]
UNSUPPORTED = {("llama-3.3", "builtin_python_call")}  # Llama's built-in python tool is not offered


def examples():
    for name in PARSED:
        fam = FAMILIES[name]
        yield name, "answer", fam["answer"], fam["answer_final"], fam["answer_reasoning"], []
        yield (
            name,
            "call",
            fam["call"],
            fam.get("call_content") or "",
            fam["call_reasoning"],
            [("get_weather", {"city": "Rome"})],
        )
        if fam.get("parallel"):
            calls = [("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Paris"})]
            yield name, "parallel", fam["parallel"], "", fam.get("parallel_reasoning") or "", calls
        for key, v in fam["variants"].items():
            if (name, key) not in UNSUPPORTED:
                yield name, key, v["raw"], v["content"], v["reasoning"], [tuple(c) for c in v["calls"]]


@pytest.mark.parametrize("size", [1, 4, 1000])
@pytest.mark.parametrize(("name", "key", "raw", "content", "reasoning", "calls"), list(examples()))
def test_the_corpus_reads_back(name, key, raw, content, reasoning, calls, size):
    fam = FAMILIES[name]
    family = family_for((TEMPLATES / fam["template"]).read_text())
    fmt = family.format
    prompt = fam["gen_prompt_end"]
    if "no_thinking" in key:  # the template closed the block: the prompt ends with </think>
        prompt = prompt.replace("<think>", "</think>")
    channels = family.channels(prompt, fmt.call_markers(["get_weather"]))
    shown = ""
    for i in range(0, len(raw), size):
        shown += channels.feed(raw[i : i + size]).content
        if channels.call_at is not None:
            break
    if channels.call_at is None:
        shown += channels.flush().content
    assert shown.strip() == content.strip()
    assert channels.reasoning.strip() == reasoning.strip()
    found = fmt.parse(raw[channels.call_at :]).calls if channels.call_at is not None else []
    assert [(c.name, json.loads(c.arguments)) for c in found] == [(n, a) for n, a in calls]
