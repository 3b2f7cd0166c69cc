"""5. file_search: a vector store filled by a batch upload, an assistant that searches it, a question, and
the answer with its citations (file_citation annotations mapped to file names).

    python scripts/examples/05_file_search.py

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
INCLUDE = ["step_details.tool_calls[*].file_search.results[*].content"]

DOCUMENTS = {
    "handbook.md": (
        "# Employee handbook\n\nVacation: every employee has 25 days of paid vacation per year. "
        "Unused days can be carried over until March 31 of the next year.\n\n"
        "Remote work: up to three days a week, agreed with your team lead.\n"
    ),
    "expenses.md": (
        "# Travel expenses\n\nTrain travel is second class. Hotels up to 150 euros a night. "
        "Receipts must be submitted within 30 days through the expenses portal.\n"
    ),
    "security.md": (
        "# Security policy\n\nLaptops use full-disk encryption. Passwords have at least 14 characters. "
        "Report lost devices to the help desk within one hour.\n"
    ),
}


def main() -> None:
    store = client.vector_stores.create(name="Company policies")
    print(f"vector store: {store.id}")
    files = [(name, io.BytesIO(text.encode())) for name, text in DOCUMENTS.items()]
    batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=store.id, files=files)
    print(f"batch: {batch.status} {batch.file_counts.completed}/{batch.file_counts.total} files indexed")

    assistant = client.beta.assistants.create(
        model=MODEL,
        name="Policy helper",
        instructions="You answer questions about company policy from the files. Answer in one sentence.",
        tools=[{"type": "file_search"}],
    )
    # Point the assistant at the store (the tutorial's "指定检索源").
    assistant = client.beta.assistants.update(
        assistant.id, tool_resources={"file_search": {"vector_store_ids": [store.id]}}
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "How many days of paid vacation do employees have?"}]
    )
    try:
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=120, poll_interval_ms=200
        )
        print(f"run: {run.status}")
        steps = client.beta.threads.runs.steps.list(
            run_id=run.id, thread_id=thread.id, order="asc", include=INCLUDE
        )
        for step in steps:
            if step.step_details.type != "tool_calls":
                continue
            for call in step.step_details.tool_calls:
                if call.type == "file_search":
                    for result in call.file_search.results or []:
                        print(f"search result: {result.file_name} score={result.score:.3f}")

        names = {}
        for message in client.beta.threads.messages.list(thread_id=thread.id, order="asc", run_id=run.id):
            for part in message.content:
                if part.type != "text":
                    continue
                text, citations = part.text.value, []
                for i, annotation in enumerate(part.text.annotations):
                    text = text.replace(annotation.text, f"[{i}]")
                    if annotation.type == "file_citation":
                        file_id = annotation.file_citation.file_id
                        names.setdefault(file_id, client.files.retrieve(file_id).filename)
                        citations.append(f"[{i}] {names[file_id]}")
                print(f"assistant > {text}")
                for line in citations:
                    print(f"citation {line}")
    finally:
        client.beta.threads.delete(thread.id)
        client.beta.assistants.delete(assistant.id)
        for vs_file in client.vector_stores.files.list(vector_store_id=store.id):
            client.files.delete(vs_file.id)
        client.vector_stores.delete(store.id)
    print("done")


if __name__ == "__main__":
    main()
