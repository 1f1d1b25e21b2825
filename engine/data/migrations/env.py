"""Alembic environment: runs on the connection engine.migrations.upgrade hands over (never its own URL)."""

from alembic import context
from sqlmodel import SQLModel

from engine.data import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, compare_type=True,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
