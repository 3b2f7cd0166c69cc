"""The keyword-search tables (file_search's lexical half), in raw SQL: full-text objects are dialect-specific.

PostgreSQL: `keyword_chunks` (store_id, chunk_id, file_id, tsv) with the tsvector computed on insert
(`to_tsvector('simple', text)`: no stemming, no stop words, like the query side) and a GIN index on it. The
text itself is not kept: Chroma has it.

SQLite: `keyword_chunks` (rowid, store_id, chunk_id, file_id, body) plus an external-content FTS5 table
`keyword_fts` over `body`, kept in step by triggers (SQLite's documented pattern), ranked with bm25().

`keyword_backfill` (both): stores whose chunks were indexed before this table existed (revision 0004 lists
every store then); the first search of such a store copies its chunks from Chroma and removes the row.

These objects are created by migration 0004_keyword_index only; the model/migration compare leaves them out
(`KEYWORD_OBJECTS`).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

KEYWORD_OBJECTS = frozenset(
    {
        "keyword_chunks",
        "keyword_backfill",
        "keyword_fts",
        "keyword_fts_data",
        "keyword_fts_idx",
        "keyword_fts_docsize",
        "keyword_fts_config",
        "keyword_fts_content",
        "ix_keyword_chunks_file",
        "ix_keyword_chunks_tsv",
    }
)

POSTGRES_UP = [
    """CREATE TABLE keyword_chunks (
        store_id TEXT COLLATE "C" NOT NULL,
        chunk_id TEXT COLLATE "C" NOT NULL,
        file_id TEXT COLLATE "C" NOT NULL,
        tsv TSVECTOR NOT NULL,
        PRIMARY KEY (store_id, chunk_id)
    )""",
    "CREATE INDEX ix_keyword_chunks_file ON keyword_chunks (store_id, file_id)",
    "CREATE INDEX ix_keyword_chunks_tsv ON keyword_chunks USING GIN (tsv)",
    """CREATE TABLE keyword_backfill (store_id TEXT COLLATE "C" PRIMARY KEY)""",
]

SQLITE_UP = [
    """CREATE TABLE keyword_chunks (
        rowid INTEGER PRIMARY KEY,
        store_id TEXT NOT NULL,
        chunk_id TEXT NOT NULL,
        file_id TEXT NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (store_id, chunk_id)
    )""",
    "CREATE INDEX ix_keyword_chunks_file ON keyword_chunks (store_id, file_id)",
    """CREATE VIRTUAL TABLE keyword_fts USING fts5(
        body, content='keyword_chunks', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER keyword_chunks_ai AFTER INSERT ON keyword_chunks BEGIN
        INSERT INTO keyword_fts (rowid, body) VALUES (new.rowid, new.body);
    END""",
    """CREATE TRIGGER keyword_chunks_ad AFTER DELETE ON keyword_chunks BEGIN
        INSERT INTO keyword_fts (keyword_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
    END""",
    """CREATE TRIGGER keyword_chunks_au AFTER UPDATE ON keyword_chunks BEGIN
        INSERT INTO keyword_fts (keyword_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
        INSERT INTO keyword_fts (rowid, body) VALUES (new.rowid, new.body);
    END""",
    "CREATE TABLE keyword_backfill (store_id TEXT PRIMARY KEY)",
]

# Stores that existed before the keyword tables: their chunks are in Chroma only.
BACKFILL_EXISTING = "INSERT INTO keyword_backfill (store_id) SELECT id FROM vector_stores"

POSTGRES_DOWN = ["DROP TABLE IF EXISTS keyword_backfill", "DROP TABLE IF EXISTS keyword_chunks"]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS keyword_chunks_ai",
    "DROP TRIGGER IF EXISTS keyword_chunks_ad",
    "DROP TRIGGER IF EXISTS keyword_chunks_au",
    "DROP TABLE IF EXISTS keyword_fts",
    "DROP TABLE IF EXISTS keyword_backfill",
    "DROP TABLE IF EXISTS keyword_chunks",
]


def create_keyword_tables(conn: Connection) -> None:
    """Migration 0004's upgrade: the tables, and every existing store marked for backfill."""
    postgres = conn.dialect.name == "postgresql"
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        conn.exec_driver_sql(statement)
    if _has_table(conn, "vector_stores"):
        conn.exec_driver_sql(BACKFILL_EXISTING)


def drop_keyword_tables(conn: Connection) -> None:
    for statement in POSTGRES_DOWN if conn.dialect.name == "postgresql" else SQLITE_DOWN:
        conn.exec_driver_sql(statement)


def has_keyword_tables(conn: Connection) -> bool:
    return _has_table(conn, "keyword_chunks")


def _has_table(conn: Connection, name: str) -> bool:
    from sqlalchemy import inspect

    return inspect(conn).has_table(name)
