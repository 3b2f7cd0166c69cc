"""2. Streaming with an AssistantEventHandler: text deltas are printed as they come, and tool calls
(here the code interpreter's code and output) as they happen.

    python scripts/examples/02_streaming.py

ASSISTD_BASE_URL (default http://127.0.0.1:8000/v1) and ASSISTD_API_KEY (default "local") say where."""

from __future__ import annotations

import os
import warnings

from openai import AssistantEventHandler, OpenAI
from typing_extensions import override

warnings.filterwarnings("ignore", category=DeprecationWarning)  # client.beta.* is marked deprecated

client = OpenAI(
    base_url=os.environ.get("ASSISTD_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ASSISTD_API_KEY", "local"),
)
MODEL = os.environ.get("ASSISTD_MODEL", "SmolLM2-135M-Instruct")


class EventHandler(AssistantEventHandler):
    """Prints what the run does while it does it."""

    def __init__(self) -> None:
        super().__init__()
        self.deltas = 0
        self.calls_done: set[str] = set()

    @override
    def on_text_created(self, text) -> None:
        print("\nassistant > ", end="", flush=True)

    @override
    def on_text_delta(self, delta, snapshot) -> None:
        self.deltas += 1
        print(delta.value, end="", flush=True)

    @override
    def on_tool_call_created(self, tool_call) -> None:
        print(f"\nassistant > tool call: {tool_call.type}", flush=True)

    @override
    def on_tool_call_delta(self, delta, snapshot) -> None:
        if delta.type == "code_interpreter" and delta.code_interpreter:
            if delta.code_interpreter.input:
                print(delta.code_interpreter.input, end="", flush=True)
            for output in delta.code_interpreter.outputs or []:
                if output.type == "logs":
                    print(f"\noutput > {output.logs}", flush=True)
        elif delta.type == "function" and delta.function and delta.function.arguments:
            print(delta.function.arguments, end="", flush=True)

    @override
    def on_tool_call_done(self, tool_call) -> None:
        if tool_call.type == "code_interpreter" and tool_call.id not in self.calls_done:
            self.calls_done.add(tool_call.id)
            print(f"\n[code ran, {len(tool_call.code_interpreter.outputs)} output(s)]", flush=True)

    @override
    def on_end(self) -> None:
        run = self.current_run
        if run is not None:
            print(f"\n[run {run.status}; {self.deltas} text deltas]", flush=True)
            if run.incomplete_details:  # the reply reached max_completion_tokens
                print(f"[run incomplete: {run.incomplete_details.reason}]", flush=True)
            if run.last_error:  # a tiny model's code may keep failing: the run says so
                print(f"[run error: {run.last_error.code}: {run.last_error.message}]", flush=True)


def main() -> None:
    assistant = client.beta.assistants.create(
        model=MODEL,
        name="Streaming helper",
        instructions="You are a helpful assistant. Answer briefly. Use Python to calculate.",
        tools=[{"type": "code_interpreter"}],
    )
    thread = client.beta.threads.create()
    try:
        # A plain answer, streamed word by word.
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Say hello to Ada.")
        with client.beta.threads.runs.stream(
            thread_id=thread.id,
            assistant_id=assistant.id,
            event_handler=EventHandler(),
            tool_choice="none",
            max_completion_tokens=60,
        ) as stream:
            stream.until_done()

        # A turn that uses a tool: the code and its output stream in as step deltas.
        client.beta.threads.messages.create(
            thread_id=thread.id, role="user", content="Print 2 to the power of 10 with Python."
        )
        with client.beta.threads.runs.stream(
            thread_id=thread.id,
            assistant_id=assistant.id,
            event_handler=EventHandler(),
            tool_choice={"type": "code_interpreter"},
            max_completion_tokens=120,
        ) as stream:
            stream.until_done()
    finally:
        client.beta.threads.delete(thread.id)
        client.beta.assistants.delete(assistant.id)
    print("done")


if __name__ == "__main__":
    main()
