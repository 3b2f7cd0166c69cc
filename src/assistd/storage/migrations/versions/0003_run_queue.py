"""The run queue of a cluster: claims fenced by an epoch, run events for streams on other nodes, workers'
leases, where code interpreter kernels live, and "one active run per thread" held by the database.

- runs.epoch: +1 at every claim or take-over; the executing worker's writes check (worker_id, epoch).
- runs.event_seq: the last number given to one of the run's events (run_events.seq).
- run_events: a run's stream events, numbered per run.
- workers: each worker process's lease (database clock): alive while lease_until is ahead.
- kernel_homes: the worker holding a thread's code interpreter kernel (the claim's affinity).
- ux_runs_active_thread: a partial unique index, at most one queued/in_progress/requires_action/cancelling
  run per thread.

Revision ID: 0003_run_queue
Revises: 0002_wide_types
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from assistd.storage.columns import BIG_INT, ID

revision = "0003_run_queue"
down_revision = "0002_wide_types"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'in_progress', 'requires_action', 'cancelling')")


def upgrade() -> None:
    op.add_column("runs", sa.Column("epoch", BIG_INT, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("event_seq", BIG_INT, nullable=False, server_default="0"))
    op.create_index(
        "ux_runs_active_thread",
        "runs",
        ["thread_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_table(
        "run_events",
        sa.Column("run_id", ID, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", BIG_INT, primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_run_events_created", "run_events", ["created_at"])
    op.create_table(
        "workers",
        sa.Column("id", ID, primary_key=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
    )
    op.create_table(
        "kernel_homes",
        sa.Column("thread_id", ID, sa.ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("worker_id", ID, nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_kernel_homes_worker_id", "kernel_homes", ["worker_id"])


def downgrade() -> None:
    op.drop_index("ix_kernel_homes_worker_id", table_name="kernel_homes")
    op.drop_table("kernel_homes")
    op.drop_table("workers")
    op.drop_index("ix_run_events_created", table_name="run_events")
    op.drop_table("run_events")
    op.drop_index("ux_runs_active_thread", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("event_seq")
        batch.drop_column("epoch")
