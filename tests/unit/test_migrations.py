"""Migrations: the baseline equals the schema of a database made before migrations, a database made by
that version (with data) upgrades without losing a row, the models never run ahead of the revisions (on
SQLite and PostgreSQL), BIGINT and bytewise ids on PostgreSQL, NUL on PostgreSQL, and the migration lock."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, insert, inspect, select, text

from assistd.storage import migrate, nul
from assistd.storage.db import Database
from assistd.storage.files import FileRow
from assistd.storage.messages import MessageRow
from assistd.storage.threads import ThreadRow

FIXTURE = Path(__file__).parent.parent / "fixtures" / "main_f43a6d4.sql"
LEGACY_COUNTS = {
    "assistants": 1,
    "threads": 2,
    "messages": 14,
    "runs": 1,
    "run_steps": 1,
    "files": 1,
    "vector_stores": 1,
    "vector_store_files": 1,
}


# parents before children
LEGACY_TABLES = [
    "assistants",
    "files",
    "threads",
    "vector_stores",
    "messages",
    "runs",
    "run_steps",
    "vector_store_file_batches",
    "vector_store_files",
    "usage_events",
]


def legacy_sqlite(path: Path) -> Path:
    """The database of a server at f43a6d4 (create_all, no alembic_version), with its rows."""
    with sqlite3.connect(path) as con:
        con.executescript(FIXTURE.read_text())
    return path


def counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in LEGACY_COUNTS}


def schema_of(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as con:
        rows = con.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE tbl_name != 'alembic_version' ORDER BY name"
        ).fetchall()
    return [(kind, name, table, " ".join((sql or "").split())) for kind, name, table, sql in rows]


# -- SQLite -----------------------------------------------------------------------------------------------


def test_baseline_is_the_schema_made_before_migrations(tmp_path):
    made_by_main = legacy_sqlite(tmp_path / "main.db")
    baseline = Database(f"sqlite:///{tmp_path / 'baseline.db'}")
    migrate.upgrade(baseline, migrate.BASELINE)
    assert schema_of(tmp_path / "baseline.db") == schema_of(made_by_main)


def test_sqlite_database_made_before_migrations_upgrades_with_its_rows(tmp_path):
    db = Database(f"sqlite:///{legacy_sqlite(tmp_path / 'assistd.db')}")
    assert migrate.current(db) is None
    assert migrate.upgrade(db) == migrate.head()
    assert migrate.current(db) == migrate.head()
    assert counts(db) == LEGACY_COUNTS  # a batch table rebuild with foreign keys on would cascade
    assert migrate.model_differences(db) == []
    assert migrate.upgrade(db) == migrate.head()  # again: nothing to do
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_models_match_the_migrations(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert migrate.current(db) is None
    migrate.upgrade(db)
    assert migrate.model_differences(db) == []


def test_compare_sees_a_model_ahead_of_its_revision(tmp_path):
    """The compare test can fail: a database one revision behind differs from the models."""
    db = Database(f"sqlite:///{tmp_path / 'behind.db'}")
    migrate.upgrade(db, migrate.BASELINE)
    assert migrate.model_differences(db) != []


def test_require_head_names_the_command(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(migrate.SchemaNotCurrent, match="assistd db upgrade"):
        migrate.require_head(db)
    migrate.upgrade(db)
    migrate.require_head(db)


def _upgrade_in_process(url: str) -> str | None:
    return migrate.upgrade(Database(url))


def test_sqlite_processes_upgrading_together_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'together.db'}"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_upgrade_in_process, [url] * 4)
    assert results == [migrate.head()] * 4
    assert (tmp_path / "together.db.lock").exists()


# -- NUL ----------------------------------------------------------------------------------------------------


def test_nul_replaced_in_json_values_and_keys():
    value = {"a\x00": ["x\x00y", {"deep": "\x00"}, 1, None], "plain": "ok"}
    assert (
        nul.json_serializer(value)
        == '{"a\\ufffd": ["x\\ufffdy", {"deep": "\\ufffd"}, 1, null], "plain": "ok"}'
    )
    assert nul.json_serializer({"text": "a backslash-u0000 is not a NUL: \\u0000"}) == (
        '{"text": "a backslash-u0000 is not a NUL: \\\\u0000"}'
    )


def test_nul_replaced_in_statement_parameters():
    assert nul._scrub({"a": "x\x00", "b": 3}) == {"a": "x\ufffd", "b": 3}
    assert nul._scrub([("\x00", 1), ("ok", 2)]) == [("\ufffd", 1), ("ok", 2)]
    same = {"a": "clean"}
    assert nul._scrub(same) is same


# -- PostgreSQL ---------------------------------------------------------------------------------------------


@pytest.fixture
def pg_db(postgres, request):
    name = "m_" + request.node.name.lower().replace("[", "_").replace("]", "")[:50]
    postgres.drop_database(name)
    db = Database(postgres.new_database(name))
    yield db
    db.dispose()
    postgres.drop_database(name)


def copy_legacy_rows(source: Path, db: Database) -> None:
    """The fixture's rows into a PostgreSQL database that has the baseline schema (as f43a6d4 made it)."""
    src = Database(f"sqlite:///{source}")
    meta = MetaData()
    with src.engine.connect() as read, db.engine.begin() as write:
        for name in LEGACY_TABLES:
            table = Table(name, meta, autoload_with=db.engine)
            rows = [
                dict(r._mapping) for r in read.execute(select(Table(name, MetaData(), autoload_with=read)))
            ]
            if rows:
                write.execute(insert(table), rows)
    src.dispose()


def test_postgres_models_match_the_migrations(pg_db):
    migrate.upgrade(pg_db)
    assert migrate.current(pg_db) == migrate.head()
    assert migrate.model_differences(pg_db) == []


def test_postgres_compare_sees_a_missing_collation(pg_db):
    migrate.upgrade(pg_db)
    with pg_db.engine.begin() as conn:
        conn.execute(text('ALTER TABLE threads ALTER COLUMN id TYPE VARCHAR COLLATE "default"'))
    found = [d for d in migrate.model_differences(pg_db) if isinstance(d, list)]
    assert [(d[0][0], d[0][2], d[0][3]) for d in found] == [("modify_type", "threads", "id")]


def test_postgres_database_made_before_migrations_upgrades_with_its_rows(pg_db, tmp_path):
    migrate.upgrade(pg_db, migrate.BASELINE)
    with pg_db.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # as create_all left it
    copy_legacy_rows(legacy_sqlite(tmp_path / "main.db"), pg_db)
    assert migrate.current(pg_db) is None
    assert migrate.upgrade(pg_db) == migrate.head()
    assert counts(pg_db) == LEGACY_COUNTS
    assert migrate.model_differences(pg_db) == []
    with pg_db.engine.connect() as conn:
        types = dict(
            conn.execute(
                text(
                    "SELECT column_name, coalesce(collation_name, data_type) FROM information_schema.columns "
                    "WHERE table_name = 'files' AND column_name IN ('id', 'bytes', 'created_at')"
                )
            ).all()
        )
        sequence = conn.execute(
            text(
                "SELECT data_type FROM information_schema.sequences "
                "WHERE sequence_name = 'usage_events_id_seq'"
            )
        ).scalar()
    assert types == {"id": "C", "bytes": "bigint", "created_at": "bigint"}
    assert sequence == "bigint"


def test_postgres_bigint_bytes_and_times_past_2038(pg_db):
    migrate.upgrade(pg_db)
    big, later = 5 * 2**31 + 7, 2**33 + 1  # a 10 GiB file, a time in the year 2242
    with pg_db.session() as s:
        s.add(
            FileRow(id="file-big", project="p", created_at=later, bytes=big, filename="huge.bin", purpose="x")
        )
        s.add(ThreadRow(id="thread_late", project="p", created_at=later))
    with pg_db.session() as s:
        row = s.get(FileRow, "file-big")
        assert (row.bytes, row.created_at) == (big, later)
        assert s.get(ThreadRow, "thread_late").created_at == later


def test_postgres_nul_in_text_and_json_becomes_replacement_character(pg_db):
    migrate.upgrade(pg_db)
    with pg_db.session() as s:
        s.add(ThreadRow(id="thread_nul", project="p", created_at=1, meta={"k\x00": "v\x00"}))
        s.flush()  # the thread before its message (no ORM relationship orders them)
        s.add(FileRow(id="file-nul", project="p", created_at=1, bytes=1, filename="a\x00b.txt", purpose="x"))
        s.add(
            MessageRow(
                id="msg_nul",
                project="p",
                thread_id="thread_nul",
                created_at=1,
                role="assistant",
                content=[{"type": "text", "text": {"value": "out\x00put", "annotations": []}}],
            )
        )
    with pg_db.session() as s:
        assert s.get(FileRow, "file-nul").filename == "a\ufffdb.txt"
        assert s.get(ThreadRow, "thread_nul").meta == {"k\ufffd": "v\ufffd"}
        assert s.get(MessageRow, "msg_nul").content[0]["text"]["value"] == "out\ufffdput"
        # the stored JSON is valid jsonb too (an escaped NUL would not be)
        assert (
            s.exec(text("SELECT content::jsonb->0->'text'->>'value' FROM messages")).scalar()
            == "out\ufffdput"
        )
        assert s.get(FileRow, "file\x00-nul") is None  # a lookup with a NUL finds nothing, no error


def test_postgres_migration_lock_is_held_while_migrating(pg_db):
    with migrate._migration_lock(pg_db), pg_db.engine.connect() as other:
        taken = other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": migrate.LOCK_KEY}).scalar()
        assert taken is False
    with pg_db.engine.connect() as other:
        assert other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": migrate.LOCK_KEY}).scalar()
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrate.LOCK_KEY})


def test_postgres_processes_upgrading_together_all_succeed(pg_db):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_upgrade_in_process, [pg_db.url] * 4)
    assert results == [migrate.head()] * 4
    assert migrate.model_differences(pg_db) == []
    assert "alembic_version" in inspect(pg_db.engine).get_table_names()


def make_older(db: Database) -> None:
    """As an assistd older than f43a6d4 left it: no usage_events table, no vector_stores.chunks_version
    (NOT NULL), no assistants.response_format (nullable); create_all never added them."""
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE usage_events"))
        conn.execute(text("DROP INDEX IF EXISTS ix_vector_stores_owner_thread_id"))
        conn.execute(text("ALTER TABLE vector_stores DROP COLUMN chunks_version"))
        conn.execute(text("ALTER TABLE assistants DROP COLUMN response_format"))


def test_sqlite_database_older_than_the_baseline_gets_its_missing_tables_and_columns(tmp_path):
    db = Database(f"sqlite:///{legacy_sqlite(tmp_path / 'assistd.db')}")
    make_older(db)
    assert migrate.upgrade(db) == migrate.head()
    assert counts(db) == LEGACY_COUNTS
    assert migrate.model_differences(db) == []
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT chunks_version FROM vector_stores")).scalars().all() == [0]
        assert conn.execute(text("SELECT response_format FROM assistants")).scalars().all() == [None]


def test_postgres_database_older_than_the_baseline_gets_its_missing_tables_and_columns(pg_db, tmp_path):
    migrate.upgrade(pg_db, migrate.BASELINE)
    with pg_db.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    copy_legacy_rows(legacy_sqlite(tmp_path / "main.db"), pg_db)
    make_older(pg_db)
    assert migrate.upgrade(pg_db) == migrate.head()
    assert counts(pg_db) == LEGACY_COUNTS
    assert migrate.model_differences(pg_db) == []
    with pg_db.engine.begin() as conn:
        assert conn.execute(text("SELECT chunks_version FROM vector_stores")).scalars().all() == [0]
        conn.execute(text("INSERT INTO usage_events (project, kind, created_at) VALUES ('p', 'k', 1)"))
