"""The Containers API: containers (code interpreter sessions with an idle expiry and a kernel home) and
their files.

Revision ID: 0008_containers
Revises: 0007_responses
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from assistd.storage.columns import BIG_INT, ID

revision = "0008_containers"
down_revision = "0007_responses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "containers",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", BIG_INT, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("expires_minutes", BIG_INT, nullable=False),
        sa.Column("last_active_at", BIG_INT, nullable=False),
        sa.Column("memory_limit", sa.String(), nullable=True),
        sa.Column("worker_id", ID, nullable=True),
        sa.Column("home_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_containers_project", "containers", ["project", "created_at", "id"])
    op.create_index("ix_containers_status", "containers", ["status", "last_active_at"])
    op.create_index("ix_containers_worker_id", "containers", ["worker_id"])
    op.create_table(
        "container_files",
        sa.Column("id", ID, primary_key=True),
        sa.Column("container_id", ID, sa.ForeignKey("containers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", BIG_INT, nullable=False),
        sa.Column("bytes", BIG_INT, nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=True),
    )
    op.create_index("ix_container_files_page", "container_files", ["container_id", "created_at", "id"])
    op.create_index("ux_container_files_path", "container_files", ["container_id", "path"], unique=True)


def downgrade() -> None:
    op.drop_table("container_files")
    op.drop_table("containers")
