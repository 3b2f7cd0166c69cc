"""The ingestion queue: vector store files are claimed in batches, fenced by an epoch, and retried later
(not failed) after a transient error.

- `epoch`: +1 on every claim; a worker's writes for a file check (worker_id, epoch).
- `retries`: transient failures so far (Chroma or the database unreachable); the file fails after
  `--ingest-retry-attempts` of them.
- `not_before`: a file put back after a transient failure is not claimed before this time (database clock).

Revision ID: 0005_ingest_queue
Revises: 0004_keyword_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from assistd.storage.columns import BIG_INT

revision = "0005_ingest_queue"
down_revision = "0004_keyword_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vector_store_files", sa.Column("epoch", BIG_INT, nullable=False, server_default="0"))
    op.add_column("vector_store_files", sa.Column("retries", BIG_INT, nullable=False, server_default="0"))
    op.add_column("vector_store_files", sa.Column("not_before", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vector_store_files") as batch:
        batch.drop_column("not_before")
        batch.drop_column("retries")
        batch.drop_column("epoch")
