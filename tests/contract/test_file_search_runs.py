"""file_search in runs: real Chroma, the real embedding model and SmolLM2; the answer cites the file."""

from __future__ import annotations

import pytest
from openai import AssistantEventHandler
from typing_extensions import override

from tests.contract.helpers import MODEL

pytestmark = pytest.mark.model

INCLUDE = ["step_details.tool_calls[*].file_search.results[*].content"]
VAULT = (
    "# The Zorblax vault\n\nThe Zorblax vault stands on the north shore of Lake Quellin. "
    "The secret code of the Zorblax vault is 7741. Only the keeper, Mirela Vant, knows it.\n"
)
GARDEN = (
    "# Gardening notes\n\nTomatoes need full sun and regular watering. Basil grows well beside tomatoes. "
    "Prune the lower leaves in July.\n"
)
QUESTION = "What is the secret code of the Zorblax vault?"


@pytest.fixture(scope="module")
def store(client):
    store = client.vector_stores.create(name="knowledge")
    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[("vault.md", VAULT.encode()), ("garden.md", GARDEN.encode())]
    )
    assert batch.file_counts.completed == 2, batch.file_counts
    return store


@pytest.fixture(scope="module")
def vault_file_id(client, store):
    files = client.vector_stores.files.list(store.id).data
    names = {client.files.retrieve(f.id).filename: f.id for f in files}
    return names["vault.md"]


@pytest.fixture(scope="module")
def assistant(client, store):
    assistant = client.beta.assistants.create(
        model=MODEL, instructions="Answer from the files. Cite your sources.", tools=[{"type": "file_search"}]
    )
    # the seed's flow: point the assistant at the store afterwards
    return client.beta.assistants.update(
        assistant.id, tool_resources={"file_search": {"vector_store_ids": [store.id]}}
    )


def test_run_searches_and_cites_the_file(client, assistant, vault_file_id):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    run = client.beta.threads.runs.create_and_poll(  # greedy: sampled, the 135M model once looped to its cap
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100, temperature=0
    )
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    call = steps[0].step_details.tool_calls[0]
    assert call.type == "file_search" and call.id.startswith("call_")
    results = call.file_search.results
    assert results and results[0].file_id == vault_file_id and results[0].file_name == "vault.md"
    assert all(0 <= r.score <= 1 for r in results) and results[0].content is None
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    text = message.content[0].text
    citations = [a for a in text.annotations if a.type == "file_citation"]
    assert citations and citations[0].file_citation.file_id == vault_file_id
    for citation in citations:
        assert text.value[citation.start_index : citation.end_index] == citation.text


def test_include_returns_result_contents(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100
    )
    steps = client.beta.threads.runs.steps.list(
        run.id, thread_id=thread.id, order="asc", include=INCLUDE
    ).data
    results = steps[0].step_details.tool_calls[0].file_search.results
    assert "7741" in results[0].content[0].text
    step = client.beta.threads.runs.steps.retrieve(
        steps[0].id, thread_id=thread.id, run_id=run.id, include=INCLUDE
    )
    assert step.step_details.tool_calls[0].file_search.results[0].content[0].type == "text"


class Done(AssistantEventHandler):
    @override
    def on_text_delta(self, delta, snapshot) -> None:
        self.snapshot = snapshot  # accumulated by the SDK from the deltas

    @override
    def on_message_done(self, message) -> None:
        self.message = message


def test_stream_sees_the_citations(client, assistant, vault_file_id):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    handler = Done()
    with client.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id=assistant.id,
        event_handler=handler,
        temperature=0,  # as above
    ) as stream:
        stream.until_done()
    annotations = handler.message.content[0].text.annotations
    assert any(a.type == "file_citation" and a.file_citation.file_id == vault_file_id for a in annotations)
    assert handler.snapshot.value == handler.message.content[0].text.value
    assert [a.text for a in handler.snapshot.annotations] == [a.text for a in annotations]
    stored = client.beta.threads.messages.retrieve(handler.message.id, thread_id=thread.id)
    assert stored.content[0].text.value == handler.message.content[0].text.value


def test_message_attachment_is_searched_in_its_thread(client):
    note = client.files.create(
        file=("ship.txt", b"The ship Albatross sails from the port of Vellor every Tuesday."),
        purpose="assistants",
    )
    assistant = client.beta.assistants.create(model=MODEL, tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "From which port does the Albatross sail?",
                "attachments": [{"file_id": note.id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    run = client.beta.threads.runs.create_and_poll(  # greedy, as above
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100, temperature=0
    )
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    results = steps[0].step_details.tool_calls[0].file_search.results
    assert results and results[0].file_id == note.id
