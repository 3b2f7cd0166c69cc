"""reasoning_effort kept with assistants and runs (it reaches the model family's chat template).

Revision ID: 0006_reasoning_effort
Revises: 0005_ingest_queue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_reasoning_effort"
down_revision = "0005_ingest_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("assistants", sa.Column("reasoning_effort", sa.String(), nullable=True))
    op.add_column("runs", sa.Column("reasoning_effort", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("reasoning_effort")
    with op.batch_alter_table("assistants") as batch:
        batch.drop_column("reasoning_effort")
