"""The schema of assistd before migrations: exactly what `create_all` made (commit f43a6d4).

A database made by such a server has these tables and no `alembic_version`; `migrate.upgrade` stamps it at
this revision and goes on from here.

Revision ID: 0001_initial
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assistants",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("instructions", sa.String(), nullable=True),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("tool_resources", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("top_p", sa.Float(), nullable=True),
        sa.Column("response_format", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_assistants_page", "assistants", ["project", "created_at", "id"], unique=False)
    op.create_table(
        "files",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("status_details", sa.String(), nullable=True),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_files_page", "files", ["project", "created_at", "id"], unique=False)
    op.create_table(
        "threads",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("tool_resources", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_threads_page", "threads", ["project", "created_at", "id"], unique=False)
    op.create_table(
        "usage_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_usage_project_kind_time", "usage_events", ["project", "kind", "created_at"], unique=False
    )
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("last_active_at", sa.Integer(), nullable=False),
        sa.Column("expires_after", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("chunks_version", sa.Integer(), nullable=False),
        sa.Column("owner_thread_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_vector_stores_owner_thread_id"), "vector_stores", ["owner_thread_id"], unique=False
    )
    op.create_index("ix_vector_stores_page", "vector_stores", ["project", "created_at", "id"], unique=False)
    op.create_table(
        "messages",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("thread_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("incomplete_details", sa.JSON(), nullable=True),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.Column("incomplete_at", sa.Integer(), nullable=True),
        sa.Column("assistant_id", sa.String(), nullable=True),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["thread_id"], ["threads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_messages_page", "messages", ["thread_id", "created_at", "id"], unique=False)
    op.create_index("ix_messages_run", "messages", ["run_id"], unique=False)
    op.create_table(
        "runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("thread_id", sa.String(), nullable=False),
        sa.Column("assistant_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("required_action", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.Integer(), nullable=True),
        sa.Column("failed_at", sa.Integer(), nullable=True),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.Column("incomplete_details", sa.JSON(), nullable=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("instructions", sa.String(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("top_p", sa.Float(), nullable=True),
        sa.Column("max_prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("max_completion_tokens", sa.Integer(), nullable=True),
        sa.Column("truncation_strategy", sa.JSON(), nullable=False),
        sa.Column("tool_choice", sa.JSON(), nullable=True),
        sa.Column("parallel_tool_calls", sa.Boolean(), nullable=False),
        sa.Column("response_format", sa.JSON(), nullable=True),
        sa.Column("tool_resources", sa.JSON(), nullable=True),
        sa.Column("worker_id", sa.String(), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("tool_rounds", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["thread_id"], ["threads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_page", "runs", ["thread_id", "created_at", "id"], unique=False)
    op.create_index("ix_runs_status", "runs", ["status"], unique=False)
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("vector_store_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("cancelled_at", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["vector_store_id"], ["vector_stores.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_vector_store_file_batches_vector_store_id"),
        "vector_store_file_batches",
        ["vector_store_id"],
        unique=False,
    )
    op.create_table(
        "vector_store_files",
        sa.Column("vector_store_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("usage_bytes", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("chunking_strategy", sa.JSON(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("batch_id", sa.String(), nullable=True),
        sa.Column("worker_id", sa.String(), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["vector_store_id"], ["vector_stores.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("vector_store_id", "id"),
    )
    op.create_index(op.f("ix_vector_store_files_batch_id"), "vector_store_files", ["batch_id"], unique=False)
    op.create_index("ix_vs_files_file", "vector_store_files", ["id"], unique=False)
    op.create_index(
        "ix_vs_files_page", "vector_store_files", ["vector_store_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_vs_files_status", "vector_store_files", ["status", "lease_until"], unique=False)
    op.create_table(
        "run_steps",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("thread_id", sa.String(), nullable=False),
        sa.Column("assistant_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("step_details", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("expired_at", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.Integer(), nullable=True),
        sa.Column("failed_at", sa.Integer(), nullable=True),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("engine_state", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_steps_page", "run_steps", ["run_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_steps_page", table_name="run_steps")
    op.drop_table("run_steps")
    op.drop_index("ix_vs_files_status", table_name="vector_store_files")
    op.drop_index("ix_vs_files_page", table_name="vector_store_files")
    op.drop_index("ix_vs_files_file", table_name="vector_store_files")
    op.drop_index(op.f("ix_vector_store_files_batch_id"), table_name="vector_store_files")
    op.drop_table("vector_store_files")
    op.drop_index(
        op.f("ix_vector_store_file_batches_vector_store_id"), table_name="vector_store_file_batches"
    )
    op.drop_table("vector_store_file_batches")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_page", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_messages_run", table_name="messages")
    op.drop_index("ix_messages_page", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_vector_stores_page", table_name="vector_stores")
    op.drop_index(op.f("ix_vector_stores_owner_thread_id"), table_name="vector_stores")
    op.drop_table("vector_stores")
    op.drop_index("ix_usage_project_kind_time", table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_index("ix_threads_page", table_name="threads")
    op.drop_table("threads")
    op.drop_index("ix_files_page", table_name="files")
    op.drop_table("files")
    op.drop_index("ix_assistants_page", table_name="assistants")
    op.drop_table("assistants")
