"""Real constrained generation with the default SmolLM2-135M model: what the grammar lets it write parses and
validates (jsonschema.validate), in every tool format and for response_format json_schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from assistd.tools.calls import FORMATS, json_schema_grammar

llama_cpp = pytest.importorskip("llama_cpp")
from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: E402

pytestmark = pytest.mark.model
MODEL = Path(__file__).resolve().parents[2] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit"],
    },
}
BOOK = {
    "name": "book_table",
    "description": "Book a restaurant table.",
    "parameters": {
        "type": "object",
        "properties": {
            "guests": {"type": "integer", "minimum": 1, "maximum": 20},
            "when": {
                "type": "object",
                "properties": {
                    "date": {"type": "string", "format": "date"},
                    "time": {"type": "string", "maxLength": 5},
                },
                "required": ["date"],
            },
            "outdoor": {"type": "boolean"},
            "notes": {"type": ["string", "null"], "maxLength": 30},
        },
        "required": ["guests", "when", "outdoor"],
    },
}
CODE = {
    "name": "code_interpreter",
    "description": "Run Python code.",
    "parameters": {
        "type": "object",
        "properties": {"code": {"type": "string", "maxLength": 120}},
        "required": ["code"],
    },
}
SCHEMAS = {f["name"]: f["parameters"] for f in (WEATHER, BOOK, CODE)}


@pytest.fixture(scope="module")
def llm():
    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing: run `make install`")
    return llama_cpp.Llama(model_path=str(MODEL), n_ctx=2048, n_threads=2, seed=0, verbose=False)


def complete(llm, fmt, question: str, functions: list[dict], **options) -> str:
    template = llm.metadata["tokenizer.chat_template"]
    tools = [{"type": "function", "function": f} for f in functions]
    messages, tools_arg = fmt.prepare([{"role": "user", "content": question}], tools, False)
    prompt = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>")(
        messages=messages, tools=tools_arg
    ).prompt
    grammar = llama_cpp.LlamaGrammar.from_string(fmt.grammar(functions, **options), verbose=False)
    out = llm.create_completion(prompt, max_tokens=160, temperature=0.0, grammar=grammar)
    assert out["choices"][0]["finish_reason"] == "stop", out["choices"][0]["text"]
    return out["choices"][0]["text"]


def test_seed_flow_two_functions_each_called_once(llm):
    """tool_choice=required, parallel calls, two functions: the grammar the engine uses (names=...)."""
    fmt = FORMATS["generic"]
    question = "What's the weather in Paris in celsius, and book a table for 4 outside on 2026-05-01?"
    text = complete(llm, fmt, question, [WEATHER, BOOK, CODE], names=["get_weather", "book_table"])
    reply = fmt.parse(text)
    assert [c.name for c in reply.calls] == ["get_weather", "book_table"], text
    for call in reply.calls:
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])


@pytest.mark.parametrize("fmt", [FORMATS["hermes"], FORMATS["llama3"]], ids=lambda f: f.name)
def test_forced_call_in_the_other_formats(llm, fmt):
    text = complete(llm, fmt, "Book a table for 4 outside on 2026-05-01.", [WEATHER, BOOK], parallel=False)
    [call] = fmt.parse(text).calls
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])


def test_named_code_interpreter_call(llm):
    fmt = FORMATS["generic"]
    text = complete(
        llm, fmt, "Compute 2**10 with Python.", [WEATHER, CODE], name="code_interpreter", parallel=False
    )
    [call] = fmt.parse(text).calls
    assert call.name == "code_interpreter"
    jsonschema.validate(json.loads(call.arguments), SCHEMAS["code_interpreter"])


def test_response_format_json_schema(llm):
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": 60},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"enum": ["math", "geo", "other"]}, "maxItems": 3},
        },
        "required": ["answer", "confidence", "tags"],
        "additionalProperties": False,
    }
    template = llm.metadata["tokenizer.chat_template"]
    prompt = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>")(
        messages=[
            {"role": "system", "content": "Answer with a single JSON object."},
            {"role": "user", "content": "What is the capital of France?"},
        ]
    ).prompt
    grammar = llama_cpp.LlamaGrammar.from_string(json_schema_grammar(schema), verbose=False)
    out = llm.create_completion(prompt, max_tokens=96, temperature=0.0, grammar=grammar)
    assert out["choices"][0]["finish_reason"] == "stop", out["choices"][0]["text"]
    jsonschema.validate(json.loads(out["choices"][0]["text"]), schema)
