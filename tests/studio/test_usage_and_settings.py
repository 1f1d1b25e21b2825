"""Usage against the plan with the API log; preferences and password."""

import pytest

from engine.accounts.users import authenticate_password, create_api_key
from engine.data.db import session_scope
from engine.data.tables import User
from tests.studio.conftest import PASSWORD, USER_EMAIL, set_value, sign_in, value_of

pytestmark = pytest.mark.anyio


async def test_usage_shows_the_plan_the_counts_and_the_api_log(user, api, engine, member_account):
    with session_scope(engine.db) as session:
        _, full_key = create_api_key(session, member_account, "script")
    response = await api.post("/api/v1/generate", headers={"Authorization": f"Bearer {full_key}"},
                              json={"prompt": "a red fox", "model": "tiny-sd", "width": 256, "height": 256})
    assert response.status_code == 200
    await sign_in(user, USER_EMAIL, path="/login?next=/usage")
    await user.should_see(content="Pro")
    with user.scope(marker="today-requests"):
        await user.should_see(content="of 1,000")  # the Pro plan's daily limit
        await user.should_see(content="1")
    with user.scope(marker="credits"):
        await user.should_see(content="9,999")
    await user.should_see(marker="usage-chart")
    (table,) = user.find(marker="api-log").elements
    (row,) = table.rows
    assert row["endpoint"] == "POST /api/v1/generate" and row["status"] == 200 and row["credits"] == 1
    assert row["key"].startswith("sk_live_")


async def test_preferences_are_saved_and_used(user, engine, member_account):
    await sign_in(user, USER_EMAIL, path="/login?next=/settings")
    set_value(user, "pref-storage", False)
    set_value(user, "pref-model", "tiny-flux")
    set_value(user, "pref-size", "16:9")
    user.find(marker="save-preferences").click()
    await user.should_see("Preferences saved.")
    with session_scope(engine.db) as session:
        prefs = session.get(User, member_account.id).preferences
    assert prefs == {"storage": False, "default_model": "tiny-flux", "default_size": "16:9"}
    assert engine.storage_for(_user(engine, member_account))["store"] is False
    await user.open("/")
    await user.should_see(marker="prompt")
    assert value_of(user, "model") == "tiny-flux" and value_of(user, "size") == "16:9"
    await user.should_see(content="448 × 256 px")  # 16:9 with the tiny model's 256 px short side


def _user(engine, account) -> User:
    with session_scope(engine.db) as session:
        return session.get(User, account.id)


async def test_change_password(user, engine, member_account):
    await sign_in(user, USER_EMAIL, path="/login?next=/settings")
    user.find(marker="current-password").type("wrong")
    user.find(marker="new-password").type("a brand new password")
    user.find(marker="repeat-password").type("a brand new password")
    user.find(marker="change-password").click()
    await user.should_see("The current password is wrong.", retries=30)
    user.find(marker="current-password").clear().type(PASSWORD)
    user.find(marker="change-password").click()
    await user.should_see("Password changed.", retries=30)
    with session_scope(engine.db) as session:
        assert authenticate_password(session, USER_EMAIL, "a brand new password").id == member_account.id
