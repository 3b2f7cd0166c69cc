"""Alembic's environment for assistd: always run from `assistd.storage.migrate`, which hands over the
connection (already holding the migration lock) in `config.attributes["connection"]`."""

from alembic import context
from sqlmodel import SQLModel

from assistd.storage import tables  # noqa: F401  (registers every table)
from assistd.storage.migrate import compare_type, include_object

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `assistd db upgrade` (assistd.storage.migrate), not alembic's CLI"
    )

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
    compare_type=compare_type,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
