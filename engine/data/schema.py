"""The database schema: Alembic migrations (engine/data/migrations), applied at start-up and by `imagestudio db upgrade`.

One process migrates at a time: on PostgreSQL under an advisory lock, on SQLite under the write lock that every
transaction takes. A database made before migrations existed (tables from ``create_all``, no version) simply
upgrades from nothing: the baseline revision takes the tables it finds and adds what they lack.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
_LOCK_KEY = 0x1AA6E5  # pg_advisory_xact_lock key of the schema migrator


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to ``revision`` (the newest by default); returns the revision it is at."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        command.upgrade(alembic_config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_database(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """`imagestudio db upgrade`: the revision before and after, for the database at ``url``."""
    from engine.data.db import make_engine

    engine = make_engine(url)
    try:
        return current_revision(engine), upgrade(engine, revision)
    finally:
        engine.dispose()


def database_revision(url: str) -> str | None:
    from engine.data.db import make_engine

    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()
