"""Model families end to end, without weights: each family's real chat template (tests/fixtures/templates)
behind a scripted llama.cpp-compatible engine registered by `url`, the replies those models really write
(tests/family_replies.py), the real server, and the official openai SDK.

Per family: a plain question gets only the final answer (no reasoning, no markup, in the message or any
delta); a call under `auto` in the family's own syntax parks the run in requires_action with the right
name and arguments, and the follow-up answers; a forced call is constrained by a grammar; the second turn's
prompt holds no earlier reasoning; reasoning_effort reaches the template."""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pytest

from tests.family_replies import FAMILIES
from tests.remote_engine import models_file, remote_server
from tests.scripted_engine import ScriptedEngine
from tests.support import KEY_A

pytestmark = pytest.mark.contract

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
MARKUP = re.compile(
    r"<\|[a-z_]+\|>|</?think>|\[/?THINK\]|\[TOOL_CALLS\]|\[ARGS\]|<｜|<tool_call>|to=functions"
)
# the families whose own call syntax assistd parses (granite, glm-4.5 and kimi-k2 get the generic tool prompt)
# a template that refuses every conversation (as strict templates refuse what they do not take)
BROKEN_TEMPLATE = "{{ raise_exception('This template takes no conversation at all.') }}"
TOOL_FAMILIES = [
    "gpt-oss", "qwen3", "deepseek-r1", "deepseek-v3.1", "mistral-small-3.2", "mistral-nemo", "magistral",
    "llama-3.3",
]  # fmt: skip
# reasoning_effort that makes a family's template think as its scripted replies do (V3.1 thinks on request)
EFFORT = {"deepseek-v3.1": "high"}


def model(name: str) -> str:
    return f"scripted-{name}"


@pytest.fixture(scope="module")
def engines():
    made = {}
    for name, fam in FAMILIES.items():
        made[name] = ScriptedEngine(
            (TEMPLATES / fam["template"]).read_text(),
            control_tokens=fam.get("control_tokens", ()),
            eog_tokens=fam.get("eog_tokens", ()),
            bos=fam.get("bos", ""),
            eos=fam.get("eos", ""),
            user_tokens=fam.get("user_tokens", ()),
        )
    made["broken"] = ScriptedEngine(BROKEN_TEMPLATE)
    yield made
    for engine in made.values():
        engine.close()


@pytest.fixture(scope="module")
def server(engines, tmp_path_factory):
    base = tmp_path_factory.mktemp("families")
    parts = []
    for name, engine in engines.items():
        one = models_file(
            base / f"{name}.toml",
            model(name),
            engine.url,
            model_path=None,
            chat_template=engine.chat_template,
        )
        parts.append(one.read_text())
    models = base / "models.toml"
    models.write_text("\n".join(parts))
    server = remote_server(base / "server", models)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)


def run_of(client, name: str, question: str, **options):
    assistant = client.beta.assistants.create(
        model=model(name), instructions="You are helpful.", reasoning_effort=EFFORT.get(name)
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": question}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50, **options
    )
    return assistant, thread, run


def answer_text(client, thread_id: str) -> str:
    return client.beta.threads.messages.list(thread_id, order="desc").data[0].content[0].text.value


@pytest.mark.parametrize("name", list(FAMILIES))
def test_plain_answer_is_the_final_text_only(engines, client, name):
    fam = FAMILIES[name]
    engines[name].script(fam["answer"])
    _, thread, run = run_of(client, name, "Say hello.")
    assert run.status == "completed", run.last_error
    text = answer_text(client, thread.id)
    assert text == fam["answer_final"].strip()
    assert not MARKUP.search(text)
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, include=["reasoning"]).data
    kept = getattr(steps[0], "reasoning", None)  # assistd's include: the run inspector shows it
    if fam.get("answer_reasoning"):
        assert fam["answer_reasoning"].strip() not in text
        assert kept == fam["answer_reasoning"]
    else:
        assert kept is None
    plain = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert "reasoning" not in plain[0].model_dump()  # not without the include: the SDK's shape


@pytest.mark.parametrize("name", list(FAMILIES))
def test_streamed_deltas_hold_no_markup(engines, client, name):
    fam = FAMILIES[name]
    engines[name].script(fam["answer"])
    assistant = client.beta.assistants.create(model=model(name), reasoning_effort=EFFORT.get(name))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Say hello."}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        deltas = list(stream.text_deltas)
    assert stream.get_final_run().status == "completed"
    assert "".join(deltas) == fam["answer_final"].strip()
    for delta in deltas:
        assert not MARKUP.search(delta), delta


@pytest.mark.parametrize("name", TOOL_FAMILIES)
def test_call_under_auto_then_answer(engines, client, name):
    fam = FAMILIES[name]
    engine = engines[name]
    engine.script(fam["call"], *fam.get("call_continuation", ()))
    assistant, thread, run = run_of(client, name, "What is the weather in Rome?", tools=[WEATHER])
    assert run.status == "requires_action", run.last_error
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Rome"})
    ]
    assert engine.requests[-1].grammar  # the call was finished under the family's grammar
    # no message was opened by the reasoning before the call
    assert client.beta.threads.messages.list(thread.id).data[0].role == "user"
    engine.script(fam["answer"])
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": calls[0].id, "output": "Sunny, 24 C"}],
    )
    assert run.status == "completed", run.last_error
    assert answer_text(client, thread.id) == fam["answer_final"].strip()
    follow_up = engine.requests[-1].prompt
    assert "Sunny, 24 C" in follow_up
    # second turn: the earlier reasoning is not in the prompt
    client.beta.threads.messages.create(thread.id, role="user", content="And tomorrow?")
    engine.script(fam["answer"])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50, tools=[WEATHER]
    )
    assert run.status == "completed", run.last_error
    second = engine.requests[-1].prompt
    for thought in (fam.get("answer_reasoning"), fam.get("call_reasoning")):
        if thought and thought.strip():
            assert thought.strip() not in second


@pytest.mark.parametrize("name", TOOL_FAMILIES)
def test_forced_call_uses_a_grammar(engines, client, name):
    fam = FAMILIES[name]
    engine = engines[name]
    engine.script(fam["forced"])
    _, _, run = run_of(client, name, "Weather in Rome?", tools=[WEATHER], tool_choice="required")
    assert run.status == "requires_action", run.last_error
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Rome"})
    ]
    request = engine.requests[-1]
    assert request.grammar and "get_weather" in request.grammar
    client.beta.threads.runs.cancel(thread_id=run.thread_id, run_id=run.id)


@pytest.mark.parametrize(
    "name, effort, expect",
    [("gpt-oss", "high", "Reasoning: high"), ("gpt-oss", None, "Reasoning: medium")],
)
def test_reasoning_effort_reaches_the_template(engines, client, name, effort, expect):
    engines[name].script(FAMILIES[name]["answer"])
    options = {"reasoning_effort": effort} if effort else {}
    _, _, run = run_of(client, name, "Hi.", **options)
    assert run.status == "completed", run.last_error
    assert expect in engines[name].requests[-1].prompt


def test_qwen3_thinking_off(engines, client):
    engines["qwen3"].script("Hello, world!")
    _, thread, run = run_of(client, "qwen3", "Hi.", reasoning_effort="none")
    assert run.status == "completed", run.last_error
    assert engines["qwen3"].requests[-1].prompt.endswith("<think>\n\n</think>\n\n")
    assert answer_text(client, thread.id) == "Hello, world!"


def test_a_cap_hit_while_reasoning_ends_incomplete_without_a_message(engines, client):
    engines["qwen3"].script("<think>\n" + "Let me think about this at length. " * 40 + "</think>\n\nDone.")
    _, thread, run = run_of(client, "qwen3", "Think hard.", max_completion_tokens=20)
    assert run.status == "incomplete", run.last_error
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert run.usage.completion_tokens == 20  # the reasoning tokens count
    answer = client.beta.threads.messages.list(thread.id).data[0]
    assert answer.role == "assistant" and answer.status == "incomplete"
    assert answer.content[0].text.value == ""  # no half-thought


def test_an_unknown_chat_format_is_refused_at_start(tmp_path):
    import subprocess
    import sys

    models = models_file(
        tmp_path / "models.toml", "x", "http://127.0.0.1:9", model_path=None, chat_format="nope"
    )
    env = {"ASSISTD_MODELS_FILE": str(models), "ASSISTD_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "assistd", "serve", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "chat_format 'nope'; choose one of: gpt-oss," in done.stderr
    assert "Traceback" not in done.stderr


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "place",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_json_schema_answer(engines, client, name):
    engine = engines[name]
    engine.script('{"city": "Rome"}')
    _, thread, run = run_of(client, name, "Which city?", response_format=SCHEMA)
    assert run.status == "completed", run.last_error
    assert json.loads(answer_text(client, thread.id)) == {"city": "Rome"}
    request = engine.requests[-1]
    assert request.grammar  # constrained to the schema
    if name == "gpt-oss":  # the answer goes to the final channel, no analysis first
        assert request.prompt.endswith("<|start|>assistant<|channel|>final<|message|>")
    if FAMILIES[name].get("reasoning_prefilled"):  # a think block the template opened is closed first
        assert request.prompt.rstrip().endswith("</think>")


PARALLEL = [name for name in TOOL_FAMILIES if FAMILIES[name].get("parallel")]


@pytest.mark.parametrize("name", PARALLEL)
def test_parallel_calls_under_auto(engines, client, name):
    fam = FAMILIES[name]
    engines[name].script(fam["parallel"])
    _, _, run = run_of(client, name, "Weather in Rome and Paris?", tools=[WEATHER])
    assert run.status == "requires_action", run.last_error
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Rome"}),
        ("get_weather", {"city": "Paris"}),
    ]
    client.beta.threads.runs.cancel(thread_id=run.thread_id, run_id=run.id)


CODE_CALLS = {
    "gpt-oss": "<|channel|>analysis<|message|>Compute it.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.code_interpreter <|constrain|>json<|message|>{"code": "print(6*7)"}',
    "qwen3": '<think>\nCompute it.\n</think>\n\n<tool_call>\n{"name": "code_interpreter", "arguments": '
    '{"code": "print(6*7)"}}\n</tool_call>',
}


@pytest.mark.parametrize("name", list(CODE_CALLS))
def test_code_interpreter_call_in_the_family_syntax(engines, client, name):
    engine = engines[name]
    engine.script(CODE_CALLS[name], FAMILIES[name]["answer"])
    _, thread, run = run_of(client, name, "What is 6*7? Use code.", tools=[{"type": "code_interpreter"}])
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    ci = steps[0].step_details.tool_calls[0].code_interpreter
    assert ci.input == "print(6*7)"
    assert [o.logs.strip() for o in ci.outputs if o.type == "logs"] == ["42"]
    assert "42" in engine.requests[-1].prompt  # the output went back to the model in its template's way
    assert answer_text(client, thread.id) == FAMILIES[name]["answer_final"].strip()


def test_a_function_without_description_on_gpt_oss(engines, client):
    """The API makes `description` optional; gpt-oss's template reads it unguarded."""
    engines["gpt-oss"].script(FAMILIES["gpt-oss"]["call"])
    bare = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER["function"]["parameters"]},
    }
    _, _, run = run_of(client, "gpt-oss", "Weather in Rome?", tools=[bare])
    assert run.status == "requires_action", run.last_error
    client.beta.threads.runs.cancel(thread_id=run.thread_id, run_id=run.id)


def test_a_harmony_call_without_tools_ends_the_reply_not_the_run(engines, client):
    """With no tools offered, a call the model writes anyway ends its reply; the text before it stands."""
    engines["gpt-oss"].script(
        "<|channel|>final<|message|>Let me look.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city": "Rome"}'
    )
    _, thread, run = run_of(client, "gpt-oss", "Weather in Rome?")
    assert run.status == "completed", run.last_error
    assert answer_text(client, thread.id) == "Let me look."


@pytest.mark.parametrize("name", ["mistral-nemo", "mistral-small-3.2", "gemma"])
def test_user_messages_in_a_row_on_alternating_templates(engines, client, name):
    """A thread may hold several user messages before a run; Mistral's and Gemma's templates insist on
    alternating roles: the messages reach the model as one turn."""
    fam = FAMILIES[name]
    engines[name].script(fam["answer"])
    assistant = client.beta.assistants.create(model=model(name), instructions="Be brief.")
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "First question."}, {"role": "user", "content": "Second one."}]
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    prompt = engines[name].requests[-1].prompt
    assert "First question.\n\nSecond one." in prompt


def test_a_template_that_fails_to_render_fails_the_run_naming_the_model(engines, client):
    _, _, run = run_of(client, "broken", "Hello?")
    assert run.status == "failed"
    assert run.last_error.code == "server_error"
    assert "scripted-broken" in run.last_error.message
    assert "This template takes no conversation at all." in run.last_error.message
    assert not engines["broken"].requests  # nothing reached the engine


# ------------------------------------------------------------------------------ the Responses API


@pytest.mark.parametrize("name", list(FAMILIES))
def test_response_reasoning_is_a_reasoning_item_never_output_text(engines, client, name):
    """The same reply through the Responses API: the family's reasoning is a `reasoning` item before the
    message (its text streamed as reasoning_text deltas), never in `output_text` or its deltas."""
    fam = FAMILIES[name]
    engines[name].script(fam["answer"])
    effort = {"effort": EFFORT[name]} if name in EFFORT else None
    with client.responses.stream(model=model(name), input="Say hello.", reasoning=effort) as stream:
        events = list(stream)
    response = stream.get_final_response()
    assert response.status == "completed", response.error
    assert response.output_text == fam["answer_final"].strip()
    assert not MARKUP.search(response.output_text)
    text_deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    thought_deltas = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert text_deltas == response.output_text
    reasoning = [item for item in response.output if item.type == "reasoning"]
    if fam.get("answer_reasoning"):
        assert [item.type for item in response.output] == ["reasoning", "message"]
        assert (
            reasoning[0].content[0].text.strip() == fam["answer_reasoning"].strip() == thought_deltas.strip()
        )
        assert fam["answer_reasoning"].strip() not in response.output_text
        assert response.usage.output_tokens_details.reasoning_tokens > 0
    else:
        assert not reasoning and not thought_deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.parametrize("name", TOOL_FAMILIES)
def test_response_call_in_the_family_syntax_then_answer(engines, client, name):
    """A call under `auto` in the family's own syntax is a `function_call` item; the client's
    function_call_output, sent with previous_response_id, reaches the model and the answer completes."""
    fam = FAMILIES[name]
    engine = engines[name]
    engine.script(fam["call"], *fam.get("call_continuation", ()))
    tool = {"type": "function", **WEATHER["function"]}
    effort = {"effort": EFFORT[name]} if name in EFFORT else None
    first = client.responses.create(
        model=model(name), input="What is the weather in Rome?", tools=[tool], reasoning=effort
    )
    assert first.status == "completed", first.error
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Rome"})]
    assert not any(item.type == "message" and MARKUP.search(item.content[0].text) for item in first.output)
    engine.script(fam["answer"])
    second = client.responses.create(
        model=model(name),
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 24 C"}],
        tools=[tool],
        reasoning=effort,
    )
    assert second.status == "completed", second.error
    assert second.output_text == fam["answer_final"].strip()
    assert "Sunny, 24 C" in engine.requests[-1].prompt
