"""Keyword search in the database: PostgreSQL full-text (tsvector + GIN) or SQLite FTS5.

The objects are raw SQL (storage/keywords.py): the model/migration compare excludes KEYWORD_OBJECTS.
Every store that exists now is listed in keyword_backfill: its chunks are copied from Chroma on its first
search.

Revision ID: 0004_keyword_index
Revises: 0003_run_queue
"""

from __future__ import annotations

from alembic import op

from assistd.storage.keywords import create_keyword_tables, drop_keyword_tables

revision = "0004_keyword_index"
down_revision = "0003_run_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_keyword_tables(op.get_bind())


def downgrade() -> None:
    drop_keyword_tables(op.get_bind())
