"""4. Function calling: two independent functions called in one request. The run stops in
`requires_action` with both calls; we run them here and submit all outputs in one request.

    python scripts/examples/04_function_calling.py

The default model is tiny, so the run sets tool_choice="required" with parallel_tool_calls (the server
then constrains decoding so that both functions are called, with arguments that fit their schemas).
ASSISTD_BASE_URL (default http://127.0.0.1:8000/v1) and ASSISTD_API_KEY (default "local") say where."""

from __future__ import annotations

import json
import os
import warnings

from openai import OpenAI

warnings.filterwarnings("ignore", category=DeprecationWarning)  # client.beta.* is marked deprecated

client = OpenAI(
    base_url=os.environ.get("ASSISTD_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ASSISTD_API_KEY", "local"),
)
MODEL = os.environ.get("ASSISTD_MODEL", "SmolLM2-135M-Instruct")
MAX_ROUNDS = 3

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "city name, e.g. Beijing"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_population",
            "description": "The population of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "city name, e.g. Shanghai"}},
                "required": ["city"],
            },
        },
    },
]


def get_weather(city: str) -> dict:
    return {"city": city, "weather": "sunny", "temperature_c": 22}


def get_population(city: str) -> dict:
    return {"city": city, "population": 24_870_000}


FUNCTIONS = {"get_weather": get_weather, "get_population": get_population}


def call(tool_call) -> str:
    """Runs one requested function with its JSON arguments; the output goes back as a string."""
    arguments = json.loads(tool_call.function.arguments or "{}")
    print(f"  {tool_call.function.name}({arguments}) [{tool_call.id}]")
    try:
        return json.dumps(FUNCTIONS[tool_call.function.name](**arguments))
    except (KeyError, TypeError) as exc:  # an unknown function or wrong arguments: tell the model
        return json.dumps({"error": str(exc)})


def main() -> None:
    assistant = client.beta.assistants.create(
        model=MODEL,
        name="City facts",
        instructions="You answer questions about cities with the functions you have.",
        tools=TOOLS,
    )
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "What is the weather in Shanghai, and how many people live there?"}
        ]
    )
    try:
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id,
            assistant_id=assistant.id,
            tool_choice="required",
            parallel_tool_calls=True,
            max_completion_tokens=120,
            poll_interval_ms=200,
        )
        rounds = 0
        while run.status == "requires_action" and rounds < MAX_ROUNDS:
            rounds += 1
            calls = run.required_action.submit_tool_outputs.tool_calls
            names = sorted({c.function.name for c in calls})
            print(f"round {rounds}: requires_action with {len(calls)} calls in one request: {names}")
            outputs = [{"tool_call_id": c.id, "output": call(c)} for c in calls]
            run = client.beta.threads.runs.submit_tool_outputs_and_poll(
                run_id=run.id, thread_id=thread.id, tool_outputs=outputs, poll_interval_ms=200
            )
        if run.status == "requires_action":  # a small model may keep asking: stop it
            run = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
            run = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=200)
        print(f"run: {run.status}")
        for message in client.beta.threads.messages.list(thread_id=thread.id, order="asc", run_id=run.id):
            for part in message.content:
                if part.type == "text":
                    print(f"assistant > {part.text.value}")
    finally:
        client.beta.threads.delete(thread.id)
        client.beta.assistants.delete(assistant.id)
    print("done")


if __name__ == "__main__":
    main()
