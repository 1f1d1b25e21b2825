"""Alembic migrations: a fresh database, an upgrade from the baseline with rows in it, and the adoption of a
database made before migrations existed. On SQLite, and on PostgreSQL where one is configured."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from engine.data.db import make_engine, session_scope
from engine.data.schema import BASELINE, current_revision, head_revision, upgrade
from tests.support import fresh_postgres_url

pytestmark = pytest.mark.sqlite_pass_only  # it picks its databases itself: once is enough

HEAD = head_revision()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.db'}"
    else:
        with fresh_postgres_url() as url:
            yield url


def test_a_fresh_database_is_built_to_match_the_models(database_url):
    db = make_engine(database_url)
    assert upgrade(db) == HEAD == current_revision(db)
    with db.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
    assert upgrade(db) == HEAD  # again: nothing to do
    db.dispose()


def _baseline_rows(connection) -> None:
    connection.execute(sa.text("INSERT INTO plan (slug, name, requests_per_minute, requests_per_day, "
                               "requests_per_month, max_concurrent_jobs, max_batch_size, storage_enabled, "
                               "storage_quota_mb, monthly_credits, price_usd_month) VALUES "
                               "('free', 'Free', 10, 50, 1500, 1, 4, false, 0, 200, 0)"))
    connection.execute(sa.text("INSERT INTO workspace (id, name, plan_slug, credits, suspended, created_at) "
                               "VALUES ('ws_1', 'One', 'free', 7, false, '2026-11-01 10:00:00')"))
    connection.execute(sa.text('INSERT INTO "user" (id, email, name, is_admin, workspace_id, is_active, preferences, '
                               "created_at) VALUES ('usr_1', 'a@example.com', 'A', true, 'ws_1', true, '{}', "
                               "'2026-11-01 10:00:00')"))
    connection.execute(sa.text("INSERT INTO imagerecord (id, user_id, workspace_id, model, prompt, width, height, "
                               "steps, guidance_scale, seed, kind, bytes, duration_ms, created_at) VALUES "
                               "('img_1', 'usr_1', 'ws_1', 'tiny-sd', 'a fox', 256, 256, 2, 5.0, 2147483647, "
                               "'generate', 10, 5, '2026-11-01 10:00:00')"))


def test_an_upgrade_from_the_baseline_keeps_every_row(database_url):
    db = make_engine(database_url)
    assert upgrade(db, BASELINE) == BASELINE
    with db.begin() as connection:
        _baseline_rows(connection)
    assert upgrade(db) == HEAD
    with db.begin() as connection:
        assert connection.execute(sa.text("SELECT credits FROM workspace WHERE id = 'ws_1'")).scalar() == 7
        assert connection.execute(sa.text('SELECT email FROM "user"')).scalar() == "a@example.com"
        assert connection.execute(sa.text("SELECT seed FROM imagerecord")).scalar() == 2**31 - 1
        # The upgraded column takes the seeds that overflowed the 32-bit one.
        connection.execute(sa.text("UPDATE imagerecord SET seed = :seed"), {"seed": 2**32 - 1})
        assert connection.execute(sa.text("SELECT seed FROM imagerecord")).scalar() == 2**32 - 1
    db.dispose()


def test_a_database_made_before_migrations_is_adopted(database_url, settings):
    """Tables from create_all of an early version, without workspace.credits_month nor a version: adopted."""
    from engine.accounts.users import create_user
    from engine.service import ImageEngine

    db = make_engine(database_url)
    upgrade(db, BASELINE)
    with db.begin() as connection:
        _baseline_rows(connection)
        connection.execute(sa.text("DROP TABLE alembic_version"))
        connection.execute(sa.text("DROP TABLE pendingcharge"))  # added by a later version, like the column
    with db.begin() as connection:
        connection.execute(sa.text("ALTER TABLE workspace DROP COLUMN credits_month"))
    assert current_revision(db) is None
    engine = ImageEngine(settings.model_copy(update={"database_url": database_url}))
    assert current_revision(engine.db) == HEAD
    with session_scope(engine.db) as session:
        user = create_user(session, "new@example.com")  # failed on such a database before
        assert user.workspace_id
    with engine.db.connect() as connection:
        assert connection.execute(sa.text("SELECT credits FROM workspace WHERE id = 'ws_1'")).scalar() == 7
    engine.db.dispose()
    db.dispose()
