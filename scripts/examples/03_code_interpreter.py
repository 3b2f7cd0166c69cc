"""3. Code interpreter with an uploaded CSV file: the file goes to the assistant's code interpreter, the
model writes Python that reads it, the sandbox runs it, and the run's steps show the code and its output.

    python scripts/examples/03_code_interpreter.py

The default model is tiny, so the run sets tool_choice to force the code interpreter (a bigger model
decides by itself), and its code is often wrong: the point here is the round trip (file -> sandbox -> code
-> output -> answer). Set ASSISTD_MODEL to a bigger model you added for real analysis.
ASSISTD_BASE_URL (default http://127.0.0.1:8000/v1) and ASSISTD_API_KEY (default "local") say where."""

from __future__ import annotations

import io
import os
import warnings

from openai import OpenAI

warnings.filterwarnings("ignore", category=DeprecationWarning)  # client.beta.* is marked deprecated

client = OpenAI(
    base_url=os.environ.get("ASSISTD_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ASSISTD_API_KEY", "local"),
)
MODEL = os.environ.get("ASSISTD_MODEL", "SmolLM2-135M-Instruct")

SALES_CSV = """month,region,units,price
2024-01,north,120,9.5
2024-01,south,80,9.5
2024-02,north,135,9.9
2024-02,south,95,9.9
2024-03,north,150,10.2
2024-03,south,110,10.2
"""


def main() -> None:
    # Upload the file (purpose "assistants"), then list / retrieve / read it back.
    file = client.files.create(file=("sales.csv", io.BytesIO(SALES_CSV.encode())), purpose="assistants")
    print(f"file: {file.id} {file.filename} {file.bytes} bytes")
    assert file.id in [f.id for f in client.files.list(purpose="assistants")]
    print(f"content starts: {client.files.content(file.id).read()[:24]!r}")

    assistant = client.beta.assistants.create(
        model=MODEL,
        name="Data analyst",
        instructions="You analyse data with Python. The files are in /mnt/data.",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [file.id]}},
    )
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "Print the total units in /mnt/data/sales.csv with pandas.",
                "attachments": [{"file_id": file.id, "tools": [{"type": "code_interpreter"}]}],
            }
        ]
    )
    try:
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id,
            assistant_id=assistant.id,
            tool_choice={"type": "code_interpreter"},
            max_completion_tokens=200,
            poll_interval_ms=250,
        )
        print(f"run: {run.status}")
        if run.last_error:  # a tiny model's code may keep failing: the run says so
            print(f"run error: {run.last_error.code}: {run.last_error.message}")
        steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc")
        for step in steps:
            if step.step_details.type != "tool_calls":
                continue
            for call in step.step_details.tool_calls:
                if call.type != "code_interpreter":
                    continue
                print(f"code >\n{call.code_interpreter.input}")
                if not call.code_interpreter.outputs:  # code that neither prints nor ends in a value
                    print("output > (none)")
                for output in call.code_interpreter.outputs:
                    if output.type == "logs":
                        print(f"output >\n{output.logs.rstrip()}")
                    else:
                        print(f"image > {output.image.file_id}")
        for message in client.beta.threads.messages.list(thread_id=thread.id, order="asc", run_id=run.id):
            for part in message.content:
                if part.type == "text":
                    print(f"assistant > {part.text.value}")
    finally:
        client.beta.threads.delete(thread.id)
        client.beta.assistants.delete(assistant.id)
        deleted = client.files.delete(file.id)
        print(f"file deleted: {deleted.deleted}")
    print("done")


if __name__ == "__main__":
    main()
