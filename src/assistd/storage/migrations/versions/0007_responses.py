"""The Responses and Conversations APIs: responses (jobs of the same work queue as runs: claim, epoch, lease,
event numbers), their input and output items, their stream events; conversations and their items.

Revision ID: 0007_responses
Revises: 0006_reasoning_effort
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from assistd.storage.columns import BIG_INT, ID

revision = "0007_responses"
down_revision = "0006_reasoning_effort"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", BIG_INT, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("instructions", sa.String(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("previous_response_id", ID, nullable=True),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("container_id", ID, nullable=True),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("stored", sa.Boolean(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("incomplete_details", sa.JSON(), nullable=True),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("started_at", BIG_INT, nullable=True),
        sa.Column("completed_at", BIG_INT, nullable=True),
        sa.Column("expires_at", BIG_INT, nullable=True),
        sa.Column("worker_id", ID, nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("epoch", BIG_INT, nullable=False),
        sa.Column("event_seq", BIG_INT, nullable=False),
        sa.Column("tool_rounds", BIG_INT, nullable=False),
    )
    op.create_index("ix_responses_status", "responses", ["status"])
    op.create_index("ix_responses_project", "responses", ["project", "created_at", "id"])
    op.create_index("ix_responses_previous_response_id", "responses", ["previous_response_id"])
    op.create_index("ix_responses_conversation_id", "responses", ["conversation_id"])
    op.create_table(
        "response_items",
        sa.Column("response_id", ID, sa.ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", BIG_INT, primary_key=True),
        sa.Column("output", sa.Boolean(), nullable=False),
        sa.Column("item_id", ID, nullable=True),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=True),
    )
    op.create_table(
        "response_events",
        sa.Column("response_id", ID, sa.ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", BIG_INT, primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_response_events_created", "response_events", ["created_at"])
    op.create_table(
        "conversations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("created_at", BIG_INT, nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("item_seq", BIG_INT, nullable=False),
    )
    op.create_index("ix_conversations_project", "conversations", ["project", "created_at", "id"])
    op.create_table(
        "conversation_items",
        sa.Column(
            "conversation_id", ID, sa.ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("seq", BIG_INT, primary_key=True),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("created_at", BIG_INT, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ux_conversation_items_id", "conversation_items", ["conversation_id", "item_id"], unique=True
    )


def downgrade() -> None:
    op.drop_table("conversation_items")
    op.drop_table("conversations")
    op.drop_table("response_events")
    op.drop_table("response_items")
    op.drop_table("responses")
