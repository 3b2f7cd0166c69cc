"""Schema migrations (Alembic, `storage/migrations/`), run from code: no alembic.ini at run time.

`upgrade(db)` brings the database to the newest revision under a lock, so that any number of servers (or a
Kubernetes Job running `assistd db upgrade`) can start together: a session-level advisory lock on PostgreSQL,
held by the connection that migrates; an exclusive `flock` on `<database file>.lock` on SQLite. A database
made before migrations existed (tables, no `alembic_version`) is stamped `0001_initial` first, then upgraded.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, inspect, literal, text
from sqlalchemy.engine import Connection, make_url

from assistd.storage.db import Database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BASELINE = "0001_initial"
# the tables of the baseline revision: their presence without `alembic_version` means "made by create_all"
BASELINE_TABLES = {"assistants", "threads", "messages", "runs", "run_steps", "files"}
# pg_advisory_lock key for migrations: the ASCII of "assistd" read as a big-endian integer
LOCK_KEY = int.from_bytes(b"assistd", "big")


class SchemaNotCurrent(RuntimeError):
    """The database is not at the newest revision and this process was told not to migrate it."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({', '.join(heads)}): one is needed")
    return heads[0]


def current(db: Database) -> str | None:
    """The database's revision; None for an empty database or one made before migrations."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_head(db: Database) -> None:
    """Raises SchemaNotCurrent, saying what to run, unless the database is at the newest revision."""
    found, wanted = current(db), head()
    if found != wanted:
        raise SchemaNotCurrent(
            f"the database is at revision {found or '(none)'}, this assistd needs {wanted}: run "
            "`assistd db upgrade` with the same settings first (or start without --no-migrate)"
        )


def upgrade(db: Database, revision: str = "head") -> str | None:
    """Migrates the database to `revision` (newest by default) under the migration lock; returns where
    it ended. Servers starting together wait for the one that migrates, then find nothing to do."""
    from assistd.storage import tables  # noqa: F401  (every model, for env.py's metadata)

    with _migration_lock(db) as conn:
        names = set(inspect(conn).get_table_names())
        config = _config(conn)
        if "alembic_version" not in names and names & BASELINE_TABLES:
            for change in _complete_baseline(conn):
                log.warning("database made by an older assistd: %s", change)
            log.info("database made before migrations: stamping it %s", BASELINE)
            command.stamp(config, BASELINE)
            conn.commit()
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(config, revision)
        conn.commit()
        after = MigrationContext.configure(conn).get_current_revision()
        if db.is_sqlite:
            _check_foreign_keys(conn)
        if before != after:
            log.info("database migrated from %s to %s", before or "(empty)", after)
        return after


def _baseline_tables() -> MetaData:
    """The tables of revision 0001 as objects: the revision run on an in-memory SQLite database, reflected
    (generic types: VARCHAR, INTEGER, FLOAT, BOOLEAN, JSON)."""
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            config = _config(conn)
            command.upgrade(config, BASELINE)
            conn.commit()
            meta = MetaData()
            meta.reflect(conn)
        meta.remove(meta.tables["alembic_version"])
        return meta
    finally:
        engine.dispose()


def _complete_baseline(conn: Connection) -> list[str]:
    """Before stamping a pre-migration database 0001: an assistd older than the baseline made fewer tables or
    columns (`create_all` never adds a column). Missing tables are created; missing columns are added, a
    NOT NULL one with the model's default for the rows already there; missing indexes are created.
    Returns what it did."""
    from sqlmodel import SQLModel

    baseline, done = _baseline_tables(), []
    present_tables = set(inspect(conn).get_table_names())
    for table in baseline.sorted_tables:
        if table.name not in present_tables:
            table.create(conn)
            done.append(f"table {table.name} created")
            continue
        present = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            ddl = f"{column.type.compile(dialect=conn.dialect)}"
            if not column.nullable:
                model = SQLModel.metadata.tables[table.name].columns[column.name]
                ddl += f" NOT NULL DEFAULT {_literal_default(conn, model)}"
            conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {ddl}')
            done.append(f"column {table.name}.{column.name} added")
        indexes = {i["name"] for i in inspect(conn).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                done.append(f"index {index.name} created")
    return done


def _literal_default(conn: Connection, column) -> str:
    """The model's Python default of a column as an SQL literal (for rows that predate the column)."""
    default = column.default
    if default is None:
        name = f"{column.table.name}.{column.name}"
        raise RuntimeError(f"cannot add {name} to an old database: it is NOT NULL without a default")
    value = default.arg(None) if default.is_callable else default.arg
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return literal(value).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}).string


@contextmanager
def _migration_lock(db: Database) -> Iterator[Connection]:
    if db.is_postgres:
        with db.engine.connect() as conn:
            # a migration may wait for the lock, and for tables in use, as long as it takes
            conn.execute(text("SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0"))
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
                log.info("waiting for another process to finish migrating the database")
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                if not conn.closed and not conn.invalidated:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                    conn.execute(text("RESET lock_timeout; RESET idle_in_transaction_session_timeout"))
                    conn.commit()
        return
    with _file_lock(db), db.engine.connect() as conn:
        if db.is_sqlite:
            # a batch migration rebuilds a table (copy, drop, rename): with foreign keys on, the drop would
            # CASCADE-delete every child row. The pragma only takes effect outside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            yield conn
        finally:
            if db.is_sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


@contextmanager
def _file_lock(db: Database) -> Iterator[None]:
    path = make_url(db.url).database if db.is_sqlite else None
    if not path or path == ":memory:" or path.startswith("file:"):
        yield
        return
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type) -> bool | None:
    """Alembic's type comparison plus the collation, which it does not compare: a `COLLATE "C"` id that a
    revision forgot is a difference. None leaves everything else to Alembic's default comparison."""
    wanted = getattr(metadata_type.dialect_impl(context.dialect), "collation", None)
    found = getattr(inspected_type, "collation", None)
    if context.dialect.name == "postgresql" and (wanted or found) and wanted != found:
        return True
    return None


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """For comparing the models with a migrated database: objects that revisions create in raw SQL (the
    keyword-search tables and their FTS5 shadow tables) have no model; everything else is compared."""
    from assistd.storage.keywords import KEYWORD_OBJECTS

    return not (reflected and compare_to is None and name in KEYWORD_OBJECTS)


def model_differences(db: Database) -> list:
    """What Alembic's autogenerate finds between the models (SQLModel.metadata) and the database: empty
    when every model change has its revision (types and id collations compared too)."""
    from alembic.autogenerate import compare_metadata
    from sqlmodel import SQLModel

    from assistd.storage import tables  # noqa: F401

    with db.engine.connect() as conn:
        opts = {"compare_type": compare_type, "include_object": include_object}
        return compare_metadata(MigrationContext.configure(conn, opts=opts), SQLModel.metadata)


def _check_foreign_keys(conn: Connection) -> None:
    """Foreign keys were off while migrating: a revision that broke one must not pass unseen."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    conn.rollback()
    if broken:
        raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")
