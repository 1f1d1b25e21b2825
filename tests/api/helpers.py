from datetime import UTC, datetime

from engine.data.db import session_scope
from engine.data.tables import Plan, User, Workspace

SMALL = {"width": 256, "height": 256}


def set_plan(engine, user_key_auth_or_user, **limits) -> None:
    """Put the user's workspace on a fresh plan with the given limits."""
    user = user_key_auth_or_user
    values = dict(slug="custom", name="Custom", requests_per_minute=1000, requests_per_day=1000,
                  requests_per_month=1000, max_concurrent_jobs=100, max_batch_size=10, monthly_credits=0,
                  storage_enabled=False) | limits
    with session_scope(engine.db) as session:
        session.merge(Plan(**values))
        workspace = session.get(Workspace, user.workspace_id)
        workspace.plan_slug = values["slug"]
        workspace.credits_month = datetime.now(UTC).strftime("%Y-%m")
        session.add(workspace)
        session.commit()


def _update(engine, model, key: str, **fields) -> None:
    with session_scope(engine.db) as session:
        row = session.get(model, key)
        for name, value in fields.items():
            setattr(row, name, value)
        session.add(row)
        session.commit()


def set_workspace(engine, user, **fields) -> None:
    _update(engine, Workspace, user.workspace_id, **fields)


def set_user(engine, user, **fields) -> None:
    _update(engine, User, user.id, **fields)
