# ruff: noqa: E501  (chat templates are quoted verbatim)
"""prepare(): tools and tool history into the prompt, rendered through real chat templates the way
llama-cpp-python renders them (Jinja2ChatFormatter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistd.tools.calls import FORMATS, format_for, template_takes_tools

llama_cpp = pytest.importorskip("llama_cpp")
from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# The tool parts of Qwen2.5's template (hermes style), as published with the model.
QWEN_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are Qwen.' }}{%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n<tools>" }}
    {%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object within <tool_call></tool_call> XML tags<|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- for tool_call in message.tool_calls %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.function.name }}{{- '", "arguments": ' }}
            {{- tool_call.function.arguments | tojson }}{{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"""

# The tool parts of Llama 3.1's template (JSON tool calling, tools in the first user message).
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}
{%- else %}{%- set system_message = "" %}{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}{%- if tools is not none %}{{- "Environment: ipython\\n" }}{%- endif %}
{{- system_message }}{{- "<|eot_id|>" }}
{%- if tools is not none %}
    {%- set first_user_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call.\\n\\n" }}
    {%- for t in tools %}{{- t | tojson(indent=4) }}{{- "\\n\\n" }}{%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}{{- raise_exception("This model only supports single tool-calls at once!") }}{%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", "parameters": ' }}{{- tool_call.arguments | tojson }}{{- "}<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}{{- message.content | tojson }}
        {%- else %}{{- message.content }}{%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"""

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}
TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]

HISTORY = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris and time in Tokyo?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz": "Asia/Tokyo"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": "21:04"},
]


@pytest.fixture(scope="module")
def smollm_template() -> str:
    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing: run `make install`")
    llm = llama_cpp.Llama(model_path=str(MODEL), vocab_only=True, verbose=False)
    return llm.metadata["tokenizer.chat_template"]


def render(template: str, messages: list[dict], tools: list[dict] | None) -> str:
    formatter = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|begin_of_text|>")
    return formatter(messages=messages, tools=tools).prompt


def test_template_detection(smollm_template):
    assert not template_takes_tools(smollm_template) and format_for(smollm_template).name == "generic"
    assert template_takes_tools(QWEN_TEMPLATE) and format_for(QWEN_TEMPLATE).name == "hermes"
    assert template_takes_tools(LLAMA31_TEMPLATE) and format_for(LLAMA31_TEMPLATE).name == "llama3"
    assert not template_takes_tools(None)
    assert template_takes_tools("{% generation %}{{ tools }}{% endgeneration %}")
    assert not template_takes_tools("{{ messages[0].content }}{# tools are not used #}")
    assert template_takes_tools("{% if tools %}{{ broken")  # unparsable: falls back to the text


def test_generic_on_smollm2_puts_tools_in_system_and_history_as_text(smollm_template):
    fmt = format_for(smollm_template)
    messages, tools_arg = fmt.prepare(HISTORY, TOOLS, template_takes_tools(smollm_template))
    assert tools_arg is None
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("You are terse.\n\n") and "<tools>" in messages[0]["content"]
    assert json.loads(messages[0]["content"].split("<tools>")[1].split("</tools>")[0]) == [WEATHER, TIME]
    assert fmt.parse(messages[2]["content"]).calls[1].name == "get_time"
    prompt = render(smollm_template, messages, tools_arg)
    assert (
        '<|im_start|>assistant\n<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    )
    assert "Result of get_weather: 18C, sunny" in prompt and "Result of get_time: 21:04" in prompt
    assert prompt.endswith("<|im_start|>assistant\n") and "You are a helpful AI assistant" not in prompt
    assert HISTORY[2]["tool_calls"]  # the caller's messages are not modified


def test_generic_without_system_message_or_tools(smollm_template):
    fmt = format_for(smollm_template)
    user = [{"role": "user", "content": "hi"}]
    messages, _ = fmt.prepare(user, TOOLS, False)
    assert (
        messages[0]["role"] == "system" and "get_weather" in messages[0]["content"] and messages[1] == user[0]
    )
    same, tools_arg = fmt.prepare(user, [], False)
    assert same == user and tools_arg is None
    # Tools gone (the engine asks for a plain answer): the history reads as text with no call syntax,
    # which a model would only copy where no call can run.
    history_only, _ = fmt.prepare(HISTORY, [], False)
    assert history_only[0] == HISTORY[0] and all("tool_calls" not in m for m in history_only)
    assert [m["role"] for m in history_only] == ["system", "user"]
    prompt = render(smollm_template, history_only, None)
    assert not any(marker in prompt for marker in ("<tool_call>", "</tool_call>", '{"name"'))
    assert "Result of get_weather: 18C, sunny\nResult of get_time: 21:04" in prompt


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_without_tools_code_that_ran_is_shown_as_code(name):
    ran = [
        {"role": "user", "content": "Sum 1 to 10."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {
                        "name": "code_interpreter",
                        "arguments": '{"code": "print(sum(range(11)))"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c", "name": "code_interpreter", "content": "55"},
    ]
    messages, tools_arg = FORMATS[name].prepare(ran, [], True)
    assert tools_arg is None
    assert messages[1] == {"role": "assistant", "content": "```python\nprint(sum(range(11)))\n```"}
    assert messages[2]["role"] == "user" and messages[2]["content"].startswith(
        "Result of code_interpreter: 55"
    )


def test_hermes_with_a_template_that_takes_tools():
    fmt = FORMATS["hermes"]
    messages, tools_arg = fmt.prepare(HISTORY, TOOLS, True)
    assert tools_arg == TOOLS
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[3]["name"] == "get_weather" and messages[4]["name"] == "get_time"
    prompt = render(QWEN_TEMPLATE, messages, tools_arg)
    assert "You are terse.\n\n# Tools" in prompt and json.dumps(TOOLS[0], ensure_ascii=False) in prompt
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time"' in prompt
    )
    assert "<|im_start|>user\n<tool_response>\n18C, sunny\n</tool_response>\n<tool_response>\n21:04" in prompt
    parsed = fmt.parse(messages[2]["content"])
    assert [c.name for c in parsed.calls] == ["get_weather", "get_time"]


def test_hermes_with_a_plain_chatml_template_writes_its_own_prompt():
    fmt = FORMATS["hermes"]
    messages, tools_arg = fmt.prepare(HISTORY, TOOLS, False)
    assert (
        tools_arg is None and "<tools>" in messages[0]["content"] and "<tool_call>" in messages[0]["content"]
    )
    assert messages[-1] == {
        "role": "user",
        "content": "<tool_response>\n18C, sunny\n</tool_response>\n<tool_response>\n21:04\n</tool_response>",
    }


def test_llama3_with_its_template():
    fmt = FORMATS["llama3"]
    messages, tools_arg = fmt.prepare(HISTORY, TOOLS, True)
    prompt = render(LLAMA31_TEMPLATE, messages, tools_arg)  # two calls in one turn: no raise_exception
    assert "Environment: ipython" in prompt and '"name": "get_weather"' in prompt
    assert (
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n'
        '{"name": "get_time", "parameters": {"tz": "Asia/Tokyo"}}<|eot_id|>' in prompt
    )
    # the real template writes a string result through tojson
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"18C, sunny"<|eot_id|>' in prompt
    own, none = fmt.prepare(HISTORY, TOOLS, False)
    assert none is None and '"parameters": dictionary' in own[0]["content"]
    assert own[-1]["role"] == "user" and "Output of get_weather: 18C, sunny" in own[-1]["content"]


def test_arguments_that_are_not_a_json_string_are_kept():
    odd = [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}},
                {"id": "d", "type": "function", "function": {"name": "g", "arguments": "not json"}},
            ],
        }
    ]
    messages, _ = FORMATS["hermes"].prepare(odd, TOOLS, False)
    content = messages[1]["content"]
    assert content.startswith("Checking.\n<tool_call>") and '"arguments": {"a": 1}' in content
    assert '"arguments": "not json"' in content
