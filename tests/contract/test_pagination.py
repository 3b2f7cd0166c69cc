"""Auto-pagination as the SDK pages (after=<last id>) across >100 objects, many sharing one created_at."""

from __future__ import annotations

from collections import Counter

import openai
import pytest
from openai.types.beta import Assistant
from openai.types.beta.threads import Message

from tests.contract.helpers import MODEL, shaped_list
from tests.support import KEY_A, KEY_B, ServerProcess

COUNT = 105


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A server of its own, so that the lists hold exactly the objects made here."""
    proc = ServerProcess(tmp_path_factory.mktemp("pagination"), args=["--kernel-pool-size", "0"])
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def sdk(own_server):
    return openai.OpenAI(base_url=f"{own_server.base_url}/v1", api_key=KEY_A, max_retries=0)


@pytest.fixture(scope="module")
def made(sdk):
    """105 assistants created as fast as possible: many share a created_at second."""
    return [sdk.beta.assistants.create(model=MODEL, name=f"a{i:03}") for i in range(COUNT)]


def test_many_objects_share_a_second(made):
    per_second = Counter(a.created_at for a in made)
    assert max(per_second.values()) > 1
    assert [a.id for a in made] == sorted(a.id for a in made)  # ids sort by creation


def test_auto_paging_desc_and_asc(sdk, made):
    ids = [a.id for a in made]
    desc = [a.id for a in sdk.beta.assistants.list(limit=7)]
    assert desc == ids[::-1]
    asc = [a.id for a in sdk.beta.assistants.list(limit=7, order="asc")]
    assert asc == ids
    assert [a.id for a in sdk.beta.assistants.list(limit=100)] == ids[::-1]
    assert [a.id for a in sdk.beta.assistants.list()] == ids[::-1]  # default limit 20


def test_pages_by_hand(sdk, made):
    ids, seen, after = [a.id for a in made], [], None
    while True:
        page = shaped_list(
            sdk.beta.assistants.with_raw_response.list(limit=10, order="asc", after=after), Assistant
        )
        seen += [a.id for a in page.data]
        if not page.has_more:
            break
        assert len(page.data) == 10
        after = page.last_id
    assert seen == ids
    first = sdk.beta.assistants.list(limit=100, order="asc")
    assert first.has_more and len(first.data) == 100
    rest = sdk.beta.assistants.list(limit=100, order="asc", after=first.last_id)
    assert not rest.has_more and [a.id for a in rest.data] == ids[100:]


def test_before_walks_backwards(sdk, made):
    ids = [a.id for a in made]
    page = sdk.beta.assistants.list(limit=5, order="asc", before=ids[50])
    assert [a.id for a in page.data] == ids[45:50] and page.has_more
    page = sdk.beta.assistants.list(limit=5, order="desc", before=ids[50])
    assert [a.id for a in page.data] == ids[51:56][::-1] and page.has_more
    page = sdk.beta.assistants.list(limit=100, order="asc", before=ids[3])
    assert [a.id for a in page.data] == ids[:3] and not page.has_more


def test_deleted_cursor_still_pages(sdk):
    extra = [sdk.beta.assistants.create(model=MODEL, name=f"tmp{i}") for i in range(4)]
    sdk.beta.assistants.delete(extra[1].id)
    page = sdk.beta.assistants.list(order="asc", after=extra[1].id)
    assert [a.id for a in page.data] == [extra[2].id, extra[3].id]
    for assistant in (extra[0], extra[2], extra[3]):
        sdk.beta.assistants.delete(assistant.id)


def test_other_project_sees_none(own_server, made):
    other = openai.OpenAI(base_url=f"{own_server.base_url}/v1", api_key=KEY_B, max_retries=0)
    assert list(other.beta.assistants.list(limit=50)) == []


def test_messages_auto_paging(sdk):
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": f"first{i}"} for i in range(60)])
    more = [sdk.beta.threads.messages.create(thread.id, role="user", content=f"m{i}") for i in range(50)]
    listed = shaped_list(
        sdk.beta.threads.messages.with_raw_response.list(thread.id, order="asc", limit=100), Message
    )
    assert [m.content[0].text.value for m in listed.data[:60]] == [f"first{i}" for i in range(60)]
    ids = [m.id for m in sdk.beta.threads.messages.list(thread.id, order="asc", limit=9)]
    assert len(ids) == 110 and len(set(ids)) == 110 and ids[60:] == [m.id for m in more]
    assert [m.id for m in sdk.beta.threads.messages.list(thread.id, limit=13)] == ids[::-1]


async def test_async_auto_paging(own_server, made):
    client = openai.AsyncOpenAI(base_url=f"{own_server.base_url}/v1", api_key=KEY_A, max_retries=0)
    seen = [a.id async for a in client.beta.assistants.list(limit=11, order="asc")]
    assert seen[:COUNT] == [a.id for a in made]
    await client.close()
