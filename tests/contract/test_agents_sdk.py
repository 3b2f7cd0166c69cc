"""A real client of the Responses API: the OpenAI Agents SDK (`openai-agents`) runs agents against the real
server - a function tool (blocking and streamed), a file search tool over a vector store made through the
Assistants-era vector store API, the code interpreter tool in an `auto` container, a handoff, and the two
kinds of memory the SDK offers (a Conversations session, `previous_response_id`).

The SDK raises on any `failed` or `incomplete` response and replays the whole history as input items with
their ids, so a run that finishes is itself the check that the server accepted all of it. Every request the
SDK sends is recorded (`Recorder`) to check what it replayed. The default model is tiny: temperature 0,
`tool_choice` forces the tool on the first turn, and a hook turns tools off once the tool has run, so that
the model answers instead of calling it again."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import httpx
import pytest
from agents import (
    Agent,
    AgentHooks,
    CodeInterpreterTool,
    FileSearchTool,
    ModelSettings,
    OpenAIConversationsSession,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.items import (
    HandoffCallItem,
    HandoffOutputItem,
    MessageOutputItem,
    ToolCallItem,
    ToolCallOutputItem,
)
from openai import AsyncOpenAI

from tests.sandbox_support import require_isolation
from tests.support import DEFAULT_MODEL, KEY_A

pytestmark = [pytest.mark.model, pytest.mark.contract]

set_tracing_disabled(True)  # the SDK would otherwise export traces to api.openai.com

MEMORY_TOKENS = 256  # the two memory tests' cap

FACT = b"The zorblat is a purple fruit that grows only on the island of Quenth. Its seeds glow at night.\n"


class Recorder:
    """The JSON bodies the SDK POSTs to /v1/responses, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/responses"):
            self.bodies.append(json.loads(request.content))


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


@pytest.fixture
async def openai_client(server, sent):
    http = httpx.AsyncClient(event_hooks={"request": [sent]}, timeout=120)
    client = AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, http_client=http)
    yield client
    await client.close()


@pytest.fixture
def model(openai_client) -> OpenAIResponsesModel:
    return OpenAIResponsesModel(DEFAULT_MODEL, openai_client)


class ToolsOffAfterUse(AgentHooks):
    """Once a tool has run, the agent's next turns offer no tool (the SDK's own reset only goes back to
    `auto`, under which the 135M model calls the tool again and again)."""

    async def on_tool_end(self, context, agent, tool, result) -> None:
        agent.model_settings = dataclasses.replace(agent.model_settings, tool_choice="none")


def weather_agent(model: OpenAIResponsesModel, calls: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Returns the weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    return Agent(
        name="Weather agent",
        instructions="You answer questions about the weather.",
        model=model,
        tools=[get_weather],
        model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=128),
        hooks=ToolsOffAfterUse(),
        reset_tool_choice=False,
    )


def kinds(items: list[Any]) -> list[str]:
    return [type(item).__name__ for item in items]


async def test_function_tool_round_trip(model, sent, openai_client):
    calls: list[str] = []
    result = await Runner.run(weather_agent(model, calls), "What is the weather in Paris?", max_turns=4)

    assert calls == ["Paris"]
    assert kinds(result.new_items) == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]
    call = result.new_items[0].raw_item
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("fc_") and call.call_id
    assert isinstance(result.final_output, str) and result.final_output.strip()

    # The second request replays the whole history: the user's message, the call with its id, the output.
    assert len(sent.bodies) == 2
    first, second = sent.bodies
    assert first["tool_choice"] == "required" and second["tool_choice"] == "none"
    replayed = second["input"]
    assert [item.get("type", "message") for item in replayed] == [
        "message",
        "function_call",
        "function_call_output",
    ]
    assert replayed[1]["id"] == call.id and replayed[1]["call_id"] == call.call_id
    assert replayed[2] == {
        "type": "function_call_output",
        "call_id": call.call_id,
        "output": "It is sunny in Paris.",
    }
    # Both responses are stored and completed; the answer is the last one's output_text.
    stored = await openai_client.responses.retrieve(result.last_response_id)
    assert stored.status == "completed"
    assert stored.output_text == result.final_output


async def test_function_tool_streamed(model, openai_client):
    calls: list[str] = []
    result = Runner.run_streamed(weather_agent(model, calls), "What is the weather in Paris?", max_turns=4)
    raw: list[Any] = []
    run_items: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data)
        elif event.type == "run_item_stream_event":
            run_items.append(event.name)

    assert calls == ["Paris"]
    assert run_items == ["tool_called", "tool_output", "message_output_created"]
    names = [event.type for event in raw]
    assert names.count("response.created") == 2 and names.count("response.completed") == 2
    assert "response.function_call_arguments.done" in names
    # Each response's events are numbered from 0 without gaps; the text deltas make the final text.
    split = names.index("response.created", 1)
    for events in (raw[:split], raw[split:]):
        assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in raw[split:] if event.type == "response.output_text.delta")
    assert deltas == result.final_output and deltas.strip()
    stored = await openai_client.responses.retrieve(raw[-1].response.id)
    assert stored.output_text == result.final_output


@pytest.fixture
def vector_store(client):
    """A vector store made through the Assistants-era API, searched from Responses."""
    file = client.files.create(file=("zorblat.txt", FACT), purpose="assistants")
    store = client.vector_stores.create(name="agents-sdk", file_ids=[file.id])
    deadline = time.monotonic() + 60
    while store.file_counts.in_progress and time.monotonic() < deadline:
        time.sleep(0.2)
        store = client.vector_stores.retrieve(store.id)
    assert store.file_counts.completed == 1, store
    yield store.id, file.id
    client.vector_stores.delete(store.id)
    client.files.delete(file.id)


async def test_file_search_tool(model, sent, vector_store):
    store_id, file_id = vector_store
    agent = Agent(
        name="Fruit expert",
        instructions="Answer from the search results in one sentence.",
        model=model,
        tools=[FileSearchTool(vector_store_ids=[store_id], max_num_results=3, include_search_results=True)],
        model_settings=ModelSettings(tool_choice="file_search", temperature=0, max_tokens=256),
    )
    result = await Runner.run(agent, "What is the zorblat?", max_turns=2)

    assert sent.bodies[0]["include"] == ["file_search_call.results"]
    assert sent.bodies[0]["tool_choice"] == {"type": "file_search"}
    assert kinds(result.new_items) == ["ToolCallItem", "MessageOutputItem"]
    search = result.new_items[0].raw_item
    assert search.type == "file_search_call" and search.status == "completed"
    assert search.queries and search.results
    assert search.results[0].file_id == file_id and "purple fruit" in search.results[0].text
    message = result.new_items[1].raw_item
    assert message.status == "completed"
    assert result.final_output.strip()  # (its words are the 135M model's: it once spelled it "zorblad")
    citations = [a for part in message.content for a in part.annotations if a.type == "file_citation"]
    assert citations and all(a.file_id == file_id for a in citations)


async def test_code_interpreter_tool(model, sent):
    require_isolation()
    agent = Agent(
        name="Calculator",
        instructions="You run Python code to answer.",
        model=model,
        tools=[CodeInterpreterTool(tool_config={"type": "code_interpreter", "container": {"type": "auto"}})],
        model_settings=ModelSettings(
            tool_choice="code_interpreter",
            temperature=0,
            max_tokens=256,
            response_include=["code_interpreter_call.outputs"],
        ),
    )
    result = await Runner.run(agent, "Print 12345 * 6789 with Python.", max_turns=2)

    assert sent.bodies[0]["tool_choice"] == {"type": "code_interpreter"}
    assert kinds(result.new_items)[-1] == "MessageOutputItem"
    code_calls = [item.raw_item for item in result.new_items if isinstance(item, ToolCallItem)]
    assert code_calls and all(c.type == "code_interpreter_call" for c in code_calls)
    call = code_calls[0]
    assert call.status == "completed" and call.code.strip()
    assert call.container_id.startswith("cntr_")
    assert isinstance(call.outputs, list)  # named in `include`: the kernel's logs (or images), maybe none
    assert isinstance(result.final_output, str) and result.final_output.strip()


async def test_handoff(model, sent):
    billing = Agent(
        name="Billing agent",
        instructions="You answer billing questions in one sentence.",
        handoff_description="Answers questions about charges and invoices.",
        model=model,
        model_settings=ModelSettings(temperature=0, max_tokens=128),
    )
    triage = Agent(
        name="Triage agent",
        instructions="You hand billing questions to the billing agent.",
        model=model,
        handoffs=[billing],
        # One call: with parallel calls allowed the 135M model repeats the call until the token limit.
        model_settings=ModelSettings(
            tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=64
        ),
    )
    result = await Runner.run(triage, "Why was I charged twice this month?", max_turns=4)

    assert result.last_agent is billing
    assert kinds(result.new_items) == ["HandoffCallItem", "HandoffOutputItem", "MessageOutputItem"]
    handoff_call = result.new_items[0]
    assert isinstance(handoff_call, HandoffCallItem)
    assert handoff_call.raw_item.name == "transfer_to_billing_agent"
    assert isinstance(result.new_items[1], HandoffOutputItem)
    assert isinstance(result.new_items[2], MessageOutputItem)
    assert result.final_output.strip()
    # The billing agent's request: its own instructions, no tools, the triage history replayed.
    assert len(sent.bodies) == 2
    second = sent.bodies[1]
    assert second["instructions"] == billing.instructions and second["tools"] == []
    assert [item.get("type", "message") for item in second["input"]] == [
        "message",
        "function_call",
        "function_call_output",
    ]
    assert second["input"][1]["id"] == handoff_call.raw_item.id


async def test_conversations_session(model, openai_client):
    """The SDK's OpenAIConversationsSession keeps the history in a conversation (/v1/conversations)."""
    agent = Agent(
        name="Assistant",
        instructions="Be brief.",
        model=model,
        # The SDK raises on an incomplete response: room for the greedy answer, 70 tokens for "What is my
        # name?" with xllamacpp 2026.10 (a 64-token cap cut it there, in CI).
        model_settings=ModelSettings(temperature=0, max_tokens=MEMORY_TOKENS),
    )
    session = OpenAIConversationsSession(openai_client=openai_client)
    first = await Runner.run(agent, "My name is Alice.", session=session)
    second = await Runner.run(agent, "What is my name?", session=session)
    assert first.final_output.strip() and second.final_output.strip()
    items = await session.get_items()
    assert [item.get("role") for item in items] == ["user", "assistant", "user", "assistant"]
    assert all(item.get("type") == "message" for item in items)
    assert items[2]["content"][0]["text"] == "What is my name?"
    assert all(item.get("id", "").startswith("msg_") for item in items)
    await session.clear_session()


async def test_previous_response_id(model, sent):
    agent = Agent(
        name="Assistant",
        instructions="Be brief.",
        model=model,
        # The SDK raises on an incomplete response: room for the greedy answer, 70 tokens for "What is my
        # name?" with xllamacpp 2026.10 (a 64-token cap cut it there, in CI).
        model_settings=ModelSettings(temperature=0, max_tokens=MEMORY_TOKENS),
    )
    first = await Runner.run(agent, "My name is Alice.")
    second = await Runner.run(agent, "What is my name?", previous_response_id=first.last_response_id)
    assert second.final_output.strip()
    assert sent.bodies[1]["previous_response_id"] == first.last_response_id
    assert sent.bodies[1]["input"] == [{"role": "user", "content": "What is my name?"}]
    assert isinstance(second.new_items[-1], MessageOutputItem)
    assert not [item for item in second.new_items if isinstance(item, ToolCallOutputItem)]
