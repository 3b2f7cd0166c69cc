"""Migrations seen from real servers: a database made by assistd before migrations (f43a6d4, with data) is
upgraded at start and read back through the SDK, on SQLite and PostgreSQL; servers starting together on one
empty PostgreSQL database all come up; --no-migrate and `assistd db upgrade`; pages in order on an ICU en-US
database; NUL from uploads on PostgreSQL."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import openai
import pytest
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run

from tests.contract.helpers import MODEL, shaped
from tests.support import KEY_A, KEY_B, ServerProcess
from tests.unit.test_migrations import copy_legacy_rows, legacy_sqlite

pytestmark = pytest.mark.contract

ARGS = ["--kernel-pool-size", "0"]
# ids in the fixture (tests/fixtures/main_f43a6d4.sql)
ASSISTANT = "asst_0VcSkxBL0000vnwoYJbgeb"
THREAD = "thread_0VcSkxBg0000Fa596c5Wt4"
THREAD_B = "thread_0VcSl5Tz0000xRHgLIUgDX"
FILE = "file-0VcSkxCy0000tOAPkgc8KE"
STORE = "vs_0VcSkxDU00001QNjOouaAZ"
RUN = "run_0VcSl3iY0000Z1oQzR2ngh"


def sdk(server: ServerProcess, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)


def assert_legacy_data_readable(server: ServerProcess) -> None:
    client = sdk(server)
    assistant = shaped(client.beta.assistants.with_raw_response.retrieve(ASSISTANT), Assistant)
    assert (assistant.name, assistant.metadata, assistant.temperature) == (
        "legacy helper",
        {"team": "ops"},
        0.5,
    )
    assert assistant.tools[0].function.name == "lookup"
    thread = shaped(client.beta.threads.with_raw_response.retrieve(THREAD), Thread)
    assert thread.metadata == {"case": "42"}
    messages = list(client.beta.threads.messages.list(THREAD, order="asc", limit=5))
    users = [m.content[0].text.value for m in messages if m.role == "user"]
    assert users == [f"message number {i}" for i in range(12)]
    assert [m.metadata["i"] for m in messages if m.role == "user"] == [str(i) for i in range(12)]
    assert len(messages) == 13  # and the run's reply
    shaped(
        client.beta.threads.messages.with_raw_response.retrieve(messages[-1].id, thread_id=THREAD), Message
    )
    run = shaped(client.beta.threads.runs.with_raw_response.retrieve(RUN, thread_id=THREAD), Run)
    assert (run.status, run.assistant_id) == ("incomplete", ASSISTANT)
    assert len(list(client.beta.threads.runs.steps.list(RUN, thread_id=THREAD))) == 1
    assert client.files.retrieve(FILE).filename == "notes.txt"
    store = client.vector_stores.retrieve(STORE)
    assert (store.name, store.file_counts.completed) == ("legacy store", 1)
    # project b still sees its own thread only
    assert sdk(server, KEY_B).beta.threads.retrieve(THREAD_B).id == THREAD_B
    with pytest.raises(openai.NotFoundError):
        sdk(server, KEY_B).beta.threads.retrieve(THREAD)
    # and the upgraded database takes new writes
    new = client.beta.threads.messages.create(THREAD, role="user", content="after the upgrade")
    assert client.beta.threads.messages.list(THREAD, limit=1).data[0].id == new.id
    assert client.beta.assistants.create(model=MODEL, name="new").name == "new"


def test_sqlite_database_made_before_migrations_serves_its_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    legacy_sqlite(data / "assistd.db")
    server = ServerProcess(data, args=ARGS)
    try:
        assert_legacy_data_readable(server)
    finally:
        server.stop()
    assert (data / "assistd.db.lock").exists()


@pytest.fixture
def pg_url(postgres, request):
    name = "s_" + request.node.name.lower()[:50]
    postgres.drop_database(name)
    yield postgres.new_database(name)
    postgres.drop_database(name)


def test_postgres_database_made_before_migrations_serves_its_data(tmp_path, pg_url):
    from assistd.storage import migrate
    from assistd.storage.db import Database

    db = Database(pg_url)
    migrate.upgrade(db, migrate.BASELINE)  # the baseline schema is the one f43a6d4's create_all made
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    copy_legacy_rows(legacy_sqlite(tmp_path / "main.db"), db)
    db.dispose()
    server = ServerProcess(tmp_path / "data", args=ARGS, database_url=pg_url)
    try:
        assert_legacy_data_readable(server)
    finally:
        server.stop()
    db = Database(pg_url)
    assert migrate.current(db) == migrate.head()
    assert migrate.model_differences(db) == []
    db.dispose()


@pytest.mark.parametrize("round_", range(5))
def test_servers_starting_together_on_an_empty_postgres_database_all_come_up(tmp_path, pg_url, round_):
    started: list[ServerProcess] = []
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            started.append(ServerProcess(tmp_path / name, args=ARGS, database_url=pg_url))
        except BaseException as exc:  # the log is in the message
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"node{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        made = sdk(started[0]).beta.assistants.create(model=MODEL, name="seen by both")
        assert sdk(started[1]).beta.assistants.retrieve(made.id).name == "seen by both"
    finally:
        for server in started:
            server.stop()


def assistd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistd", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_no_migrate_refuses_a_database_behind_then_db_upgrade(tmp_path, pg_url):
    import os

    env = {**os.environ, "ASSISTD_DATABASE_URL": pg_url, "ASSISTD_DATA_DIR": str(tmp_path / "data")}
    refused = assistd("serve", "--no-migrate", "--port", "1", env=env)
    assert refused.returncode == 2
    assert "assistd db upgrade" in refused.stderr and "(none)" in refused.stderr
    behind = assistd("db", "current", env=env)
    assert behind.returncode == 1 and behind.stdout.startswith("(none)")
    done = assistd("db", "upgrade", env=env)
    assert done.returncode == 0, done.stderr
    current = assistd("db", "current", env=env)
    assert current.returncode == 0 and current.stdout.split()[0] in done.stdout
    server = ServerProcess(tmp_path / "data", args=[*ARGS, "--no-migrate"], database_url=pg_url)
    try:
        assert sdk(server).beta.assistants.create(model=MODEL).object == "assistant"
    finally:
        server.stop()


def test_pages_in_order_on_an_icu_en_us_database(tmp_path, postgres):
    postgres.drop_database("icu_pages")
    url = postgres.new_database("icu_pages", icu_locale="en-US")
    server = ServerProcess(tmp_path / "data", args=ARGS, database_url=url)
    try:
        client = sdk(server)
        thread = client.beta.threads.create()
        made = [
            client.beta.threads.messages.create(thread.id, role="user", content=f"m{i}").id
            for i in range(120)
        ]
        assert made == sorted(made)  # ids sort by creation, bytewise
        for order, expected in (("asc", made), ("desc", made[::-1])):
            seen, after = [], None
            while True:
                page = client.beta.threads.messages.list(thread.id, order=order, limit=10, after=after)
                seen += [m.id for m in page.data]
                if not page.has_more:
                    break
                after = page.last_id
            assert seen == expected, order
            backwards = client.beta.threads.messages.list(
                thread.id, order=order, limit=10, before=expected[60]
            )
            assert [m.id for m in backwards.data] == expected[50:60]
        # the database's own collation would order these ids otherwise: the test needs COLLATE "C"
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.connect() as conn:
            by_locale = conn.execute(
                text('SELECT id FROM messages WHERE thread_id = :t ORDER BY id COLLATE "default"'),
                {"t": thread.id},
            ).scalars()
            assert list(by_locale) != made
        engine.dispose()
    finally:
        server.stop()
        postgres.drop_database("icu_pages")


def test_nul_from_uploads_on_postgres(tmp_path, pg_url):
    """Requests with NUL in their JSON are refused; text that enters otherwise (an upload's name and body,
    text extracted from it into the keyword index) is stored with U+FFFD, never a 500."""
    server = ServerProcess(tmp_path / "data", args=ARGS, database_url=pg_url)
    try:
        client = sdk(server)
        # NUL in the first 8 KiB makes a .txt "binary" (refused); later ones reach the extracted text
        body = (
            b"Plain filler text, nothing to see. " * 260 + b"alpha\x00beta. The secret word is zebra.\n" * 30
        )
        uploaded = client.files.create(file=("nul\x00name.txt", io.BytesIO(body)), purpose="assistants")
        assert "\x00" not in uploaded.filename
        assert client.files.retrieve(uploaded.id).filename == uploaded.filename
        assert client.files.content(uploaded.id).read() == body  # the blob keeps its bytes
        store = client.vector_stores.create(name="nul", file_ids=[uploaded.id])
        for _ in range(600):
            counts = client.vector_stores.retrieve(store.id).file_counts
            if counts.in_progress == 0:
                break
            threading.Event().wait(0.5)
        assert (counts.completed, counts.failed) == (1, 0), list(client.vector_stores.files.list(store.id))
        hits = client.vector_stores.search(store.id, query="zebra")
        assert hits.data and "zebra" in hits.data[0].content[0].text
        assert 'HTTP/1.1" 500' not in server.log()
    finally:
        server.stop()


@pytest.mark.model
def test_nul_in_code_interpreter_output_on_postgres(tmp_path, pg_url):
    """A kernel prints a NUL (a file's bytes): the step, its events and the reply are stored, the NUL as
    U+FFFD; the run ends as it would on SQLite, never a 500."""
    server = ServerProcess(tmp_path / "data", args=ARGS, database_url=pg_url)
    try:
        client = sdk(server)
        assistant = client.beta.assistants.create(
            model=MODEL,
            instructions="You run the user's Python code with the code_interpreter tool.",
            tools=[{"type": "code_interpreter"}],
        )
        notes = client.files.create(file=("notes.txt", b"kiwi\x00pear\n"), purpose="assistants")
        thread = client.beta.threads.create(
            messages=[
                {
                    "role": "user",
                    "content": "Run this Python code: print(open('/mnt/data/notes.txt').read())",
                    "attachments": [{"file_id": notes.id, "tools": [{"type": "code_interpreter"}]}],
                }
            ]
        )
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id,
            assistant_id=assistant.id,
            tool_choice={"type": "code_interpreter"},
            temperature=0,
            max_completion_tokens=64,
            poll_interval_ms=200,
        )
        assert run.status in ("completed", "incomplete"), run.last_error
        steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
        call = steps[0].step_details.tool_calls[0]
        logs = "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs")
        assert "kiwi\ufffdpear" in logs
        assert client.beta.threads.messages.list(thread.id).data  # the thread reads back
        assert 'HTTP/1.1" 500' not in server.log()
    finally:
        server.stop()
