"""First run, sign in, sign out, and every page guarded."""

import pytest
from sqlmodel import select

from engine.accounts.admin import set_user_active
from engine.accounts.users import create_user
from engine.data.db import session_scope
from engine.data.tables import Plan, User, Workspace
from studio.auth import safe_next
from tests.studio.conftest import ADMIN_EMAIL, PASSWORD, USER_EMAIL, eventually, sign_in, value_of

pytestmark = pytest.mark.anyio

PAGES = ["/", "/gallery", "/keys", "/usage", "/settings", "/admin"]


async def test_first_run_creates_the_admin_in_the_browser(user, engine):
    await user.open("/")
    await user.should_see(marker="create-admin", retries=20)  # / -> /login -> /setup
    user.find(marker="name").type("Ada")
    user.find(marker="email").type(ADMIN_EMAIL)
    user.find(marker="password").type(PASSWORD)
    user.find(marker="confirm").type(PASSWORD)
    user.find(marker="create-admin").click()
    await user.should_see(marker="prompt", retries=30)
    with session_scope(engine.db) as session:
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        workspace = session.get(Workspace, admin.workspace_id)
    assert admin.is_admin and admin.password_hash and workspace.plan_slug == "owner"


async def test_first_run_rejects_mismatched_and_short_passwords(user):
    await user.open("/setup")
    user.find(marker="email").type(ADMIN_EMAIL)
    user.find(marker="password").type("short")
    user.find(marker="confirm").type("shorter")
    user.find(marker="create-admin").click()
    await user.should_see("The passwords don't match.")
    user.find(marker="confirm").clear().type("short")
    user.find(marker="create-admin").click()
    await user.should_see("password must be at least 8 characters", retries=20)


async def test_first_run_claims_the_key_only_admin_from_the_cli(user, engine):
    with session_scope(engine.db) as session:
        create_user(session, "admin@localhost", is_admin=True)  # what `imagestudio keys create` makes
    await user.open("/setup")
    user.find(marker="email").type("admin@localhost")
    user.find(marker="password").type(PASSWORD)
    user.find(marker="confirm").type(PASSWORD)
    user.find(marker="create-admin").click()
    await user.should_see(marker="prompt", retries=30)
    with session_scope(engine.db) as session:
        assert len(session.exec(select(User)).all()) == 1


async def test_setup_is_closed_once_an_admin_can_sign_in(user, admin_account):
    await user.open("/setup")
    await user.should_see(marker="sign-in", retries=20)
    await user.should_not_see(marker="create-admin")


async def test_sign_in_wrong_password_then_right_then_sign_out(user, admin_account):
    await user.open("/login")
    user.find(marker="email").type(ADMIN_EMAIL)
    user.find(marker="password").type("not the password")
    user.find(marker="sign-in").click()
    await user.should_see("wrong email or password", retries=20)
    await sign_in(user, ADMIN_EMAIL)
    await user.should_see(marker="prompt")
    user.find(marker="sign-out").click()
    await user.should_see(marker="sign-in", retries=20)
    await user.open("/gallery")
    await user.should_see(marker="sign-in", retries=20)


async def test_every_page_sends_a_stranger_to_sign_in(user, admin_account):
    for path in PAGES:
        await user.open(path)
        await user.should_see(marker="sign-in", retries=20)
        await user.should_not_see(marker="page-title")
        assert user.back_history[-1].startswith("/login")


async def test_sign_in_returns_to_the_page_asked_for(user, admin_account):
    await user.open("/keys")
    await user.should_see(marker="sign-in", retries=20)
    assert user.back_history[-1] == "/login?next=/keys"
    user.find(marker="email").type(ADMIN_EMAIL)
    user.find(marker="password").type(PASSWORD)
    user.find(marker="sign-in").click()
    await user.should_see(marker="create-key", retries=30)


async def test_a_disabled_account_is_signed_out(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    with session_scope(engine.db) as session:
        set_user_active(session, member_account.id, False)
    await user.open("/gallery")
    await user.should_see(marker="sign-in", retries=20)
    user.find(marker="email").type(USER_EMAIL)
    user.find(marker="password").type(PASSWORD)
    user.find(marker="sign-in").click()
    await user.should_see("this account is disabled", retries=20)


async def test_signing_out_everywhere_ends_the_studio_session_too(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    await user.open("/gallery")
    await user.should_see(marker="gallery-total", retries=20)
    engine.accounts.revoke_sessions(member_account.id)  # POST /auth/logout, or a new password elsewhere
    await user.open("/gallery")
    await user.should_see(marker="sign-in", retries=20)
    await sign_in(user, USER_EMAIL)  # a new sign-in is a new session
    await user.open("/gallery")
    await user.should_see(marker="gallery-total", retries=20)


async def test_repeated_failures_are_throttled(user, admin_account):
    await user.open("/login")
    user.find(marker="email").type(ADMIN_EMAIL)
    for _ in range(5):
        user.find(marker="password").type("wrong password")
        user.find(marker="sign-in").click()
        await eventually(lambda: value_of(user, "password") == "")  # cleared after each failure
    user.find(marker="password").type(PASSWORD)
    user.find(marker="sign-in").click()
    await user.should_see("too many failed sign-in attempts", retries=20)


def test_next_only_goes_to_this_site():
    assert safe_next("/gallery") == "/gallery"
    for target in ("//evil.example", "https://evil.example", "\\\\evil", "", None, "gallery"):
        assert safe_next(target) == "/"


def test_first_admin_gets_the_biggest_plan_when_it_exists(engine):
    with session_scope(engine.db) as session:
        assert session.get(Plan, "studio") is not None
