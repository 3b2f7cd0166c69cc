"""1. Quickstart: an assistant, a thread with metadata, messages, a run with polling, and the thread's
retrieve / update (the tutorial's `modify`) / delete. Run it against `make serve`:

    python scripts/examples/01_quickstart.py

ASSISTD_BASE_URL (default http://127.0.0.1:8000/v1) and ASSISTD_API_KEY (default "local") say where."""

from __future__ import annotations

import os
import warnings

from openai import OpenAI

warnings.filterwarnings("ignore", category=DeprecationWarning)  # client.beta.* is marked deprecated

client = OpenAI(
    base_url=os.environ.get("ASSISTD_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ASSISTD_API_KEY", "local"),
)
MODEL = os.environ.get("ASSISTD_MODEL", "SmolLM2-135M-Instruct")


def text_of(message) -> str:
    return "".join(part.text.value for part in message.content if part.type == "text")


def main() -> None:
    # An assistant: one role, its own instructions.
    assistant = client.beta.assistants.create(
        model=MODEL,
        name="Quickstart helper",
        instructions="You are a friendly assistant. You answer in one short sentence.",
    )
    print(f"assistant: {assistant.id} ({assistant.name}, {assistant.model})")

    # A thread holds the conversation; metadata can say whose it is.
    thread = client.beta.threads.create(metadata={"fullname": "Wang Xiaoming", "username": "wxm"})
    print(f"thread: {thread.id} metadata={thread.metadata}")
    thread = client.beta.threads.retrieve(thread.id)
    thread = client.beta.threads.update(thread.id, metadata={**thread.metadata, "plan": "free"})
    print(f"thread updated: metadata={thread.metadata}")

    # Messages: text content and their own metadata.
    message = client.beta.threads.messages.create(
        thread_id=thread.id,
        role="user",
        content="Hello! What can you do for me?",
        metadata={"source": "quickstart"},
    )
    message = client.beta.threads.messages.update(
        message.id, thread_id=thread.id, metadata={"source": "quickstart", "checked": "yes"}
    )
    print(f"message: {message.id} metadata={message.metadata}")

    # One run = one prompt: the assistant answers the thread. create_and_poll waits for a final status.
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=80, poll_interval_ms=200
    )
    print(f"run: {run.id} status={run.status} usage={run.usage.total_tokens if run.usage else None} tokens")
    client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"reviewed": "no"})
    print(f"runs on the thread: {[r.id for r in client.beta.threads.runs.list(thread_id=thread.id)]}")

    for msg in client.beta.threads.messages.list(thread_id=thread.id, order="asc"):
        print(f"{msg.role}: {text_of(msg)}")

    # A thread can also start with its messages.
    second = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "My name is Xiaoming.", "metadata": {"turn": "1"}},
            {"role": "user", "content": "Greet me by name."},
        ]
    )
    count = len(client.beta.threads.messages.list(thread_id=second.id).data)
    print(f"second thread: {second.id} with {count} messages")

    for tid in (thread.id, second.id):
        deleted = client.beta.threads.delete(tid)
        print(f"thread deleted: {deleted.id} {deleted.deleted}")
    client.beta.assistants.delete(assistant.id)
    print("done")


if __name__ == "__main__":
    main()
