"""code_interpreter in runs: the real model writes code, a real sandboxed kernel runs it, files go in and
out as Files. The default model is tiny, so prompts hand it the code and `tool_choice` forces the tool."""

from __future__ import annotations

import pytest
from openai import AssistantEventHandler
from typing_extensions import override

from tests.contract.helpers import MODEL

pytestmark = pytest.mark.model

FORCE = {"type": "code_interpreter"}
CSV = b"a,b\n1,2\n3,4\n5,6\n"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def csv_file(client):
    return client.files.create(file=("data.csv", CSV), purpose="assistants")


@pytest.fixture(scope="module")
def assistant(client, csv_file):
    return client.beta.assistants.create(
        model=MODEL,
        instructions="You run the user's Python code with the code_interpreter tool.",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [csv_file.id]}},
    )


def run_code(client, assistant, text: str, thread_id: str | None = None):
    if thread_id is None:
        thread_id = client.beta.threads.create().id
    client.beta.threads.messages.create(thread_id, role="user", content=text)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant.id, tool_choice=FORCE, temperature=0, poll_interval_ms=100
    )
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc").data
    calls = [c for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]
    return run, calls


def logs_of(call) -> str:
    return "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs")


def test_computation_output_appears_in_logs(client, assistant):
    run, calls = run_code(client, assistant, "Run this Python code: print(6*7)")
    assert run.status == "completed", run.last_error
    assert calls[0].type == "code_interpreter" and calls[0].id.startswith("call_")
    assert "6*7" in calls[0].code_interpreter.input.replace(" ", "") and "42" in logs_of(calls[0])
    reply = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0]
    assert reply.role == "assistant" and reply.status == "completed"


def test_csv_input_file_is_read_by_pandas(client, assistant):
    _run, calls = run_code(
        client,
        assistant,
        "Run this Python code: import pandas as pd; print(pd.read_csv('/mnt/data/data.csv').shape)",
    )
    assert "(3, 2)" in logs_of(calls[0]), calls[0].code_interpreter


def test_message_attachment_is_available_to_the_code(client, assistant):
    other = client.files.create(file=("notes.txt", b"secret-word-kiwi\n"), purpose="assistants")
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "Run this Python code: print(open('/mnt/data/notes.txt').read())",
                "attachments": [{"file_id": other.id, "tools": [{"type": "code_interpreter"}]}],
            }
        ]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice=FORCE, temperature=0, poll_interval_ms=100
    )
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert "secret-word-kiwi" in logs_of(steps[0].step_details.tool_calls[0])


def test_matplotlib_plot_becomes_an_image_file_part(client, assistant):
    run, calls = run_code(
        client,
        assistant,
        "Run this Python code: import matplotlib.pyplot as plt; plt.plot([1, 2, 3]); plt.show()",
    )
    images = [o.image.file_id for o in calls[0].code_interpreter.outputs if o.type == "image"]
    assert images, calls[0].code_interpreter
    assert client.files.content(images[0]).content.startswith(PNG)
    assert client.files.retrieve(images[0]).purpose == "assistants_output"
    reply = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0]
    parts = [p.image_file.file_id for p in reply.content if p.type == "image_file"]
    assert parts == images


def test_written_file_comes_back_with_a_file_path_annotation(client, assistant):
    run, _calls = run_code(
        client,
        assistant,
        "Run this Python code: import numpy as np; np.savetxt('/mnt/data/out.txt', [1, 2, 3])",
    )
    assert run.status == "completed", run.last_error
    reply = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0]
    annotations = [a for p in reply.content if p.type == "text" for a in p.text.annotations]
    paths = [a for a in annotations if a.type == "file_path"]
    assert paths and paths[0].text == "sandbox:/mnt/data/out.txt"
    text = reply.content[0].text.value
    assert text[paths[0].start_index : paths[0].end_index] == paths[0].text
    content = client.files.content(paths[0].file_path.file_id).content
    assert [float(x) for x in content.split()] == [1.0, 2.0, 3.0]


def test_an_exception_is_followed_by_a_second_attempt(client, assistant):
    run, calls = run_code(client, assistant, "Run this Python code: print(1/0)")
    assert len(calls) >= 2
    assert "ZeroDivisionError" in logs_of(calls[0])
    assert run.status in ("completed", "failed")
    if run.status == "failed":  # every attempt failed: the round cap ends the run with a clear message
        assert "consecutive tool rounds" in run.last_error.message


def test_state_is_kept_within_a_thread_and_not_shared(client, assistant):
    run, _ = run_code(client, assistant, "Run this Python code: x = 41")
    _, calls = run_code(client, assistant, "Run this Python code: print(x)", thread_id=run.thread_id)
    assert "41" in logs_of(calls[0])
    _, calls = run_code(client, assistant, "Run this Python code: print(x)")
    assert "NameError" in logs_of(calls[0])


class CodeRecorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[str] = []
        self.inputs_by_call: dict[str, str] = {}
        self.outputs: list[str] = []
        self.images: list[str] = []

    @override
    def on_tool_call_delta(self, delta, snapshot) -> None:
        if delta.type == "code_interpreter" and delta.code_interpreter:
            if delta.code_interpreter.input:
                self.inputs.append(delta.code_interpreter.input)
                key = snapshot.id or ""
                self.inputs_by_call[key] = self.inputs_by_call.get(key, "") + delta.code_interpreter.input
            for output in delta.code_interpreter.outputs or []:
                self.outputs.append(output.type)

    @override
    def on_image_file_done(self, image_file) -> None:
        self.images.append(image_file.file_id)


def test_streaming_carries_code_outputs_and_images(client, assistant):
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "Run this Python code: "
                "import matplotlib.pyplot as plt; plt.plot([3, 1, 2]); plt.show()",
            }
        ]
    )
    handler = CodeRecorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tool_choice=FORCE,
        temperature=0,
        event_handler=handler,
    ) as stream:
        stream.until_done()
    assert "plt.plot" in "".join(handler.inputs)
    assert "image" in handler.outputs
    assert handler.images, "on_image_file_done did not fire"
    steps = stream.get_final_run_steps()
    call = steps[0].step_details.tool_calls[0]
    assert call.code_interpreter.input == handler.inputs_by_call[call.id]  # a retry streams a call of its own


def usage(server, key: str, kind: str) -> dict:
    import time

    import httpx

    start = int(time.time()) - 3600
    response = httpx.get(
        f"{server.base_url}/v1/organization/usage/{kind}",
        params={"start_time": start, "bucket_width": "1h"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_sessions_are_counted_per_project(server, client, assistant):
    from tests.support import KEY_A, KEY_B

    run_code(client, assistant, "Run this Python code: print(6*7)")
    page = usage(server, KEY_A, "code_interpreter_sessions")
    assert page["object"] == "page" and page["data"][0]["object"] == "bucket"
    counted = sum(r["num_sessions"] for b in page["data"] for r in b["results"])
    assert counted >= 1
    other = usage(server, KEY_B, "code_interpreter_sessions")
    assert sum(r["num_sessions"] for b in other["data"] for r in b["results"]) == 0
    tokens = usage(server, KEY_A, "completions")
    assert sum(r["output_tokens"] for b in tokens["data"] for r in b["results"]) > 0
