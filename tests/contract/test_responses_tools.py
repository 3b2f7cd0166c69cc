"""Tools inside a response, on the same vector stores and code interpreter sessions as the Assistants API:
file_search over a vector store made through the vector stores API (results, filters on attributes,
max_num_results, file_citation annotations), and code_interpreter in a container (`auto`, or one made with
the Containers API): its code runs in the real sandboxed kernel, the files it writes are container files,
cited in the message. The model is the bundled 135M one: prompts hand it the code and `tool_choice` forces
the tool, as the Assistants code interpreter tests do."""

from __future__ import annotations

import openai
import pytest

from tests.contract.helpers import MODEL, api_error

pytestmark = pytest.mark.model

VAULT = (
    "# The Zorblax vault\n\nThe Zorblax vault stands on the north shore of Lake Quellin. "
    "The secret code of the Zorblax vault is 7741. Only the keeper, Mirela Vant, knows it.\n"
)
GARDEN = (
    "# Gardening notes\n\nTomatoes need full sun and regular watering. Basil grows well beside tomatoes. "
    "The secret of the garden is compost.\n"
)
QUESTION = "What is the secret code of the Zorblax vault?"
RESULTS = ["file_search_call.results"]
OUTPUTS = ["code_interpreter_call.outputs"]
FORCE_CODE = {"type": "code_interpreter"}
CODER = "You run the user's Python code with the code_interpreter tool."


@pytest.fixture(scope="module")
def store(client):
    """Made through the vector stores API (as an Assistants user made theirs), files with attributes."""
    store = client.vector_stores.create(name="shared knowledge")
    for name, text, topic in (("vault.md", VAULT, "vault"), ("garden.md", GARDEN, "garden")):
        file = client.files.create(file=(name, text.encode()), purpose="assistants")
        client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=file.id, attributes={"topic": topic}
        )
    return store


def search_call(response):
    return next(item for item in response.output if item.type == "file_search_call")


def test_file_search_finds_and_cites_the_file(client, store):
    response = client.responses.create(
        model=MODEL,
        input=QUESTION,
        tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
        include=RESULTS,
        max_output_tokens=60,
    )
    assert response.status in ("completed", "incomplete"), response.error
    call = search_call(response)
    assert call.status == "completed" and call.queries and call.results
    assert call.results[0].filename == "vault.md" and "7741" in call.results[0].text
    message = response.output[-1]
    assert message.type == "message"
    citations = [a for a in message.content[0].annotations if a.type == "file_citation"]
    assert citations and citations[0].filename in ("vault.md", "garden.md")
    assert citations[0].file_id.startswith("file-")
    # without the include the results are not shown (the hosted API answers null)
    again = client.responses.retrieve(response.id)
    assert search_call(again).results is None
    assert search_call(client.responses.retrieve(response.id, include=RESULTS)).results


def test_file_search_filters_and_max_num_results(client, store):
    tool = {
        "type": "file_search",
        "vector_store_ids": [store.id],
        "filters": {"type": "eq", "key": "topic", "value": "garden"},
        "max_num_results": 1,
    }
    response = client.responses.create(
        model=MODEL, input="What is the secret?", tools=[tool], include=RESULTS, max_output_tokens=30
    )
    results = search_call(response).results
    assert [r.filename for r in results] == ["garden.md"]


def test_file_search_on_an_unknown_store_is_a_404_naming_it(client):
    with api_error(openai.NotFoundError, 404, param="tools[0].vector_store_ids[0]"):
        client.responses.create(
            model=MODEL, input="hi", tools=[{"type": "file_search", "vector_store_ids": ["vs_nope"]}]
        )


def code_call(response):
    return next(item for item in response.output if item.type == "code_interpreter_call")


def test_code_runs_in_an_auto_container_whose_files_come_back(client):
    response = client.responses.create(
        model=MODEL,
        instructions=CODER,
        input="Run this Python code: import numpy as np; np.savetxt('/mnt/data/out.txt', [1, 2, 3])",
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        tool_choice=FORCE_CODE,
        include=OUTPUTS,
        temperature=0,
        max_output_tokens=60,
    )
    assert response.status in ("completed", "incomplete"), response.error
    call = code_call(response)
    assert "savetxt" in call.code and call.container_id.startswith("cntr_")
    assert call.outputs is not None  # included
    files = client.containers.files.list(call.container_id).data
    written = [f for f in files if f.path == "/mnt/data/out.txt"]
    assert written and written[0].source != "user"
    content = client.containers.files.content.retrieve(written[0].id, container_id=call.container_id)
    assert [float(x) for x in content.read().split()] == [1.0, 2.0, 3.0]
    cited = [a for a in response.output[-1].content[0].annotations if a.type == "container_file_citation"]
    assert cited and cited[0].file_id == written[0].id and cited[0].container_id == call.container_id
    # the next response of the chain runs in the same container: its state and files are there
    follow = client.responses.create(
        model=MODEL,
        previous_response_id=response.id,
        instructions=CODER,
        input="Run this Python code: print(6*7)",
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        tool_choice=FORCE_CODE,
        include=OUTPUTS,
        temperature=0,
        max_output_tokens=40,
    )
    second = code_call(follow)
    assert second.container_id == call.container_id
    assert any(o.type == "logs" and "42" in o.logs for o in second.outputs)
    assert "out.txt" in {
        f.path.rsplit("/", 1)[-1] for f in client.containers.files.list(call.container_id).data
    }


def test_code_runs_in_a_container_made_with_the_containers_api(client):
    data = client.files.create(file=("numbers.csv", b"n\n1\n2\n3\n"), purpose="assistants")
    container = client.containers.create(name="analysis", file_ids=[data.id])
    response = client.responses.create(
        model=MODEL,
        instructions=CODER,
        input="Run this Python code: print(sum(int(x) for x in open('/mnt/data/numbers.csv').read().split()[1:]))",  # noqa: E501
        tools=[{"type": "code_interpreter", "container": container.id}],
        tool_choice=FORCE_CODE,
        include=OUTPUTS,
        temperature=0,
        max_output_tokens=40,
    )
    call = code_call(response)
    assert call.container_id == container.id
    assert any(o.type == "logs" and "6" in o.logs for o in call.outputs), call.outputs


def test_an_unknown_container_is_a_404_naming_it(client):
    with api_error(openai.NotFoundError, 404, param="tools[0].container"):
        client.responses.create(
            model=MODEL, input="hi", tools=[{"type": "code_interpreter", "container": "cntr_nope"}]
        )


def test_file_search_streamed_cites_without_markers_and_shows_results_only_when_included(client, store):
    """The Responses API cites by annotation only: no `【…】` marker reaches the text or its deltas, which
    add up to it; a search's results are in its stream events only when `include` asks for them."""
    tool = {"type": "file_search", "vector_store_ids": [store.id]}
    for include in ([], RESULTS):
        with client.responses.stream(
            model=MODEL, input=QUESTION, tools=[tool], include=include, max_output_tokens=60
        ) as stream:
            events = list(stream)
        final = events[-1].response  # completed, or incomplete at max_output_tokens
        message = final.output[-1]
        text = message.content[0].text
        assert "【" not in text and "†" not in text
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == text
        citations = [a for a in message.content[0].annotations if a.type == "file_citation"]
        assert citations and all(0 <= a.index <= len(text) for a in citations)
        done = [
            e.item
            for e in events
            if e.type == "response.output_item.done" and e.item.type == "file_search_call"
        ]
        assert done and done[0].id.startswith("fs_")
        assert (done[0].results is not None) == bool(include)
        assert (search_call(final).results is not None) == bool(include)
