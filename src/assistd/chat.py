"""`assistd chat ASSISTANT_ID`: a terminal chat with streaming through the openai SDK, for a quick check.

Text arrives as the run streams it (AssistantEventHandler text deltas); tool calls are shown as they happen;
a function call asks the person for its output and submits it (streamed too)."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

from typing_extensions import override

ENDED = {"completed", "failed", "cancelled", "expired", "incomplete"}


def _handler_class() -> type:
    from openai import AssistantEventHandler

    class TerminalHandler(AssistantEventHandler):
        @override
        def on_text_created(self, text: Any) -> None:
            print("assistant > ", end="", flush=True)

        @override
        def on_text_delta(self, delta: Any, snapshot: Any) -> None:
            print(delta.value or "", end="", flush=True)

        @override
        def on_text_done(self, text: Any) -> None:
            print(flush=True)

        @override
        def on_tool_call_created(self, tool_call: Any) -> None:
            name = tool_call.function.name if tool_call.type == "function" else tool_call.type
            print(f"[tool call: {name}]", flush=True)

        @override
        def on_tool_call_delta(self, delta: Any, snapshot: Any) -> None:
            if delta.type == "code_interpreter" and delta.code_interpreter:
                if delta.code_interpreter.input:
                    print(delta.code_interpreter.input, end="", flush=True)
                for output in delta.code_interpreter.outputs or []:
                    if output.type == "logs" and output.logs:
                        print(f"\n[output]\n{output.logs}", flush=True)

        @override
        def on_tool_call_done(self, tool_call: Any) -> None:
            if tool_call.type == "file_search":
                results = tool_call.file_search.results or []
                print(f"[file_search: {len(results)} results]", flush=True)

    return TerminalHandler


def ask_outputs(run: Any) -> list[dict[str, str]]:
    """Asks the person for each requested function's output."""
    outputs = []
    for call in run.required_action.submit_tool_outputs.tool_calls:
        try:
            arguments = json.dumps(json.loads(call.function.arguments or "{}"))
        except json.JSONDecodeError:
            arguments = call.function.arguments
        output = input(f"output of {call.function.name}({arguments}) > ")
        outputs.append({"tool_call_id": call.id, "output": output})
    return outputs


def chat(
    base_url: str,
    api_key: str,
    assistant_id: str,
    thread_id: str | None = None,
    max_tokens: int | None = None,
) -> int:
    import openai

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # client.beta.* is marked deprecated
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1)
    handler = _handler_class()
    try:
        assistant = client.beta.assistants.retrieve(assistant_id)
        thread = (
            client.beta.threads.retrieve(thread_id)
            if thread_id
            else client.beta.threads.create(metadata={"source": "assistd chat"})
        )
    except openai.APIConnectionError:
        print(f"assistd chat: cannot reach {base_url}: is `assistd serve` running?", file=sys.stderr)
        return 1
    except openai.APIStatusError as exc:
        print(f"assistd chat: {exc.message}", file=sys.stderr)
        return 1
    print(f"Chatting with {assistant.name or assistant.id} ({assistant.model}) on thread {thread.id}.")
    print("An empty line or Ctrl-D ends the chat.", flush=True)
    while True:
        try:
            text = input("you > ")
        except EOFError:
            print()
            break
        if not text.strip():
            break
        try:
            turn(client, handler, assistant.id, thread.id, text, max_tokens)
        except openai.APIError as exc:
            print(f"[error: {exc.message}]", flush=True)
    print(f"Thread {thread.id} kept: `assistd chat {assistant.id} --thread {thread.id}` continues it.")
    return 0


def turn(
    client: Any, handler: type, assistant_id: str, thread_id: str, text: str, max_tokens: int | None
) -> None:
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content=text)
    options = {"max_completion_tokens": max_tokens} if max_tokens else {}
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler(), **options
    ) as stream:
        stream.until_done()
        run = stream.current_run
    while run is not None and run.status == "requires_action":
        with client.beta.threads.runs.submit_tool_outputs_stream(
            thread_id=thread_id, run_id=run.id, tool_outputs=ask_outputs(run), event_handler=handler()
        ) as stream:
            stream.until_done()
            run = stream.current_run
    if run is not None and run.status != "completed":
        reason = run.last_error.message if run.last_error else run.incomplete_details or run.status
        print(f"[run {run.status}: {reason}]", flush=True)
