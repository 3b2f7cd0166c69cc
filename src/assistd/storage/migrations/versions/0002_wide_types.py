"""Wide types on PostgreSQL: BIGINT where a value can outgrow 2^31 (times past 2038, files over 2 GiB, token
counts, counters) and bytewise (`COLLATE "C"`) ids, so that pages order by id the same on any database locale
(an ICU en-US database sorts `_` and letters otherwise). SQLite needs neither: its INTEGER is 64-bit and its
text compares bytewise, so this revision does nothing there.

Revision ID: 0002_wide_types
Revises: 0001_initial
"""

from alembic import op

revision = "0002_wide_types"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

BIG = "BIGINT"
ID = "ID"

# table -> [(column, kind)]; one ALTER TABLE per table, so each table is rewritten once
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "assistants": [("id", ID), ("created_at", BIG)],
    "files": [("id", ID), ("created_at", BIG), ("bytes", BIG), ("expires_at", BIG)],
    "threads": [("id", ID), ("created_at", BIG)],
    "messages": [
        ("id", ID),
        ("thread_id", ID),
        ("created_at", BIG),
        ("completed_at", BIG),
        ("incomplete_at", BIG),
        ("assistant_id", ID),
        ("run_id", ID),
    ],
    "runs": [
        ("id", ID),
        ("thread_id", ID),
        ("assistant_id", ID),
        ("created_at", BIG),
        ("expires_at", BIG),
        ("started_at", BIG),
        ("cancelled_at", BIG),
        ("failed_at", BIG),
        ("completed_at", BIG),
        ("max_prompt_tokens", BIG),
        ("max_completion_tokens", BIG),
        ("worker_id", ID),
        ("tool_rounds", BIG),
    ],
    "run_steps": [
        ("id", ID),
        ("run_id", ID),
        ("thread_id", ID),
        ("assistant_id", ID),
        ("created_at", BIG),
        ("expired_at", BIG),
        ("cancelled_at", BIG),
        ("failed_at", BIG),
        ("completed_at", BIG),
    ],
    "usage_events": [("id", BIG), ("created_at", BIG)],
    "vector_stores": [
        ("id", ID),
        ("created_at", BIG),
        ("last_active_at", BIG),
        ("chunks_version", BIG),
        ("owner_thread_id", ID),
    ],
    "vector_store_file_batches": [
        ("id", ID),
        ("vector_store_id", ID),
        ("created_at", BIG),
        ("cancelled_at", BIG),
    ],
    "vector_store_files": [
        ("vector_store_id", ID),
        ("id", ID),
        ("created_at", BIG),
        ("usage_bytes", BIG),
        ("chunk_count", BIG),
        ("batch_id", ID),
        ("worker_id", ID),
        ("attempts", BIG),
    ],
}

# the sequence behind usage_events.id (SERIAL made it `AS integer`)
SEQUENCES = ["usage_events_id_seq"]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter({BIG: "BIGINT", ID: 'VARCHAR COLLATE "C"'})
    for sequence in SEQUENCES:
        op.execute(f'ALTER SEQUENCE "{sequence}" AS BIGINT')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for sequence in SEQUENCES:
        op.execute(f'ALTER SEQUENCE "{sequence}" AS INTEGER')
    _alter({BIG: "INTEGER", ID: 'VARCHAR COLLATE "default"'})


def _alter(types: dict[str, str]) -> None:
    for table, columns in COLUMNS.items():
        changes = ", ".join(f'ALTER COLUMN "{column}" TYPE {types[kind]}' for column, kind in columns)
        op.execute(f'ALTER TABLE "{table}" {changes}')
