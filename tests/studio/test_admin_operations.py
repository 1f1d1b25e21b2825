"""engine/accounts/admin.py: first run, accounts, workspaces and plans (no UI)."""

import pytest
from sqlmodel import select

from engine.accounts import admin
from engine.accounts.users import create_user
from engine.data.db import session_scope
from engine.data.tables import Plan, User
from engine.errors import Conflict, InvalidRequest, NotFound

PASSWORD = "correct horse battery"


def test_first_run_lasts_until_an_admin_can_sign_in(engine):
    with session_scope(engine.db) as session:
        assert admin.needs_first_run(session)
        create_user(session, "keyonly@example.com", is_admin=True)  # no password: can't sign in
        create_user(session, "member@example.com", password_hash="x")  # not an admin
        assert admin.needs_first_run(session)
        first = admin.create_first_admin(session, "Ada@Example.com", PASSWORD, "Ada")
        assert (first.email, first.is_admin, first.name) == ("ada@example.com", True, "Ada")
        assert not admin.needs_first_run(session)
        with pytest.raises(Conflict):
            admin.create_first_admin(session, "eve@example.com", PASSWORD)


def test_first_admin_validates_before_writing(engine):
    with session_scope(engine.db) as session:
        with pytest.raises(InvalidRequest):
            admin.create_first_admin(session, "ada@example.com", "short")
        with pytest.raises(InvalidRequest):
            admin.create_first_admin(session, "not an email", PASSWORD)
        assert session.exec(select(User)).all() == []


def test_accounts_and_workspace_changes(engine):
    with session_scope(engine.db) as session:
        ada = admin.create_account(session, "ada@example.com", PASSWORD, is_admin=True, plan_slug="studio")
        bob = admin.create_account(session, "bob@example.com", PASSWORD, name="Bob")
        with pytest.raises(NotFound):
            admin.create_account(session, "cy@example.com", PASSWORD, plan_slug="gold")
        rows = {row.user.email: row for row in admin.list_accounts(session)}
        assert set(rows) == {"ada@example.com", "bob@example.com"}
        assert rows["bob@example.com"].workspace.plan_slug == "free" and rows["bob@example.com"].images == 0
        assert [r.user.email for r in admin.list_accounts(session, "BOB")] == ["bob@example.com"]
        assert [r.user.email for r in admin.list_accounts(session, "%")] == []  # a literal percent sign

        assert admin.set_suspended(session, bob.workspace_id, True).suspended
        assert admin.set_plan(session, bob.workspace_id, "pro").plan_slug == "pro"
        with pytest.raises(NotFound):
            admin.set_plan(session, bob.workspace_id, "gold")
        assert admin.set_credits(session, bob.workspace_id, 42).credits == 42
        for bad in (-1, 1.5, True, "7"):
            with pytest.raises(InvalidRequest):
                admin.set_credits(session, bob.workspace_id, bad)
        with pytest.raises(NotFound):
            admin.set_suspended(session, "ws_missing", True)

        assert not admin.set_user_active(session, bob.id, False).is_active
        with pytest.raises(Conflict):
            admin.set_user_active(session, ada.id, False)  # the last active admin


def test_suspension_is_enforced_by_the_meter(engine):
    from engine.errors import Forbidden

    with session_scope(engine.db) as session:
        bob = admin.create_account(session, "bob@example.com", PASSWORD)
        admin.set_suspended(session, bob.workspace_id, True)
    with pytest.raises(Forbidden):
        engine.meter.admit(bob.workspace_id)


def test_plans(engine):
    with session_scope(engine.db) as session:
        team = admin.save_plan(session, {"slug": "Team", "name": "Team", "requests_per_day": 500,
                                         "max_batch_size": 8.0, "storage_enabled": True, "price_usd_month": 12})
        assert (team.slug, team.requests_per_day, team.max_batch_size, team.storage_enabled) == ("team", 500, 8, True)
        assert admin.save_plan(session, {"slug": "team", "name": "Team+", "monthly_credits": 9}).name == "Team+"
        assert session.get(Plan, "team").requests_per_day == 500  # untouched fields stay
        for bad in ({"slug": "", "name": "x"}, {"slug": "a b", "name": "x"}, {"slug": "ok", "name": ""},
                    {"slug": "ok", "name": "x", "requests_per_day": -1},
                    {"slug": "ok", "name": "x", "max_concurrent_jobs": 0},
                    {"slug": "ok", "name": "x", "price_usd_month": -5}):
            with pytest.raises(InvalidRequest):
                admin.save_plan(session, bad)
        assert "team" in [p.slug for p in admin.list_plans(session)]

        bob = admin.create_account(session, "bob@example.com", PASSWORD, plan_slug="team")
        assert admin.plan_workspaces(session)["team"] == 1
        with pytest.raises(Conflict):
            admin.delete_plan(session, "team")
        admin.set_plan(session, bob.workspace_id, "free")
        admin.delete_plan(session, "team")
        assert session.get(Plan, "team") is None
        with pytest.raises(NotFound):
            admin.delete_plan(session, "team")
