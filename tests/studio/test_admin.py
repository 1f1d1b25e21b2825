"""Admin: admins only; suspend blocks API calls; plans, credits, users, models and server settings."""

import pytest
from sqlmodel import select

from engine.accounts.users import authenticate_password, create_api_key
from engine.data.db import session_scope
from engine.data.tables import Plan, User, Workspace
from tests.api.helpers import set_user
from tests.studio.conftest import ADMIN_EMAIL, PASSWORD, USER_EMAIL, eventually, set_value, sign_in, submit_held

pytestmark = pytest.mark.anyio

BOB = USER_EMAIL


def workspace_of(engine, account) -> Workspace:
    with session_scope(engine.db) as session:
        return session.get(Workspace, account.workspace_id)


def plan_of(engine, slug: str) -> Plan | None:
    with session_scope(engine.db) as session:
        return session.get(Plan, slug)


async def open_admin(user, tab: str | None = None) -> None:
    await sign_in(user, ADMIN_EMAIL, path="/login?next=/admin")
    await user.should_see(marker="tab-users")
    if tab:
        user.find(marker=f"tab-{tab}").click()


async def test_a_non_admin_never_reaches_the_admin_page(user, member_account):
    await sign_in(user, BOB)
    await user.should_not_see(marker="nav-admin")
    await user.should_see(marker="nav-gallery")
    await user.open("/admin")
    await user.should_see(marker="prompt", retries=20)  # sent back to Generate
    await user.should_not_see(marker="tab-users")
    await user.should_not_see(content=ADMIN_EMAIL)


async def test_suspend_blocks_api_calls_until_lifted(user, api, engine, member_account):
    with session_scope(engine.db) as session:
        _, key = create_api_key(session, member_account, "site")
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "a red fox", "model": "tiny-sd", "width": 256, "height": 256}
    assert (await api.post("/api/v1/generate", headers=headers, json=body)).status_code == 200

    await open_admin(user)
    user.find(marker=f"suspend-{BOB}").click()
    await user.should_see("Suspended: its API keys and generations are refused.")
    assert workspace_of(engine, member_account).suspended
    response = await api.post("/api/v1/generate", headers=headers, json=body)
    assert response.status_code == 403 and "suspended" in response.json()["error"]["message"]

    user.find(marker=f"suspend-{BOB}").click()
    await user.should_see("Suspension lifted.")
    assert (await api.post("/api/v1/generate", headers=headers, json=body)).status_code == 200


async def test_set_plan_and_credits(user, engine, member_account):
    await open_admin(user)
    set_value(user, f"plan-{BOB}", "studio")
    await user.should_see("Plan changed.")
    set_value(user, f"credits-{BOB}", 77)
    user.find(marker=f"set-credits-{BOB}").click()
    await user.should_see("Credits set.")
    workspace = workspace_of(engine, member_account)
    assert (workspace.plan_slug, workspace.credits) == ("studio", 77)


async def test_disable_a_user_but_never_the_last_admin(user, engine, admin_account, member_account):
    await open_admin(user)
    user.find(marker=f"active-{BOB}").click()
    await user.should_see("Sign-in and API keys disabled.")
    user.find(marker=f"active-{ADMIN_EMAIL}").click()
    await user.should_see("the last active administrator can't be disabled")
    with session_scope(engine.db) as session:
        assert not session.get(User, member_account.id).is_active
        assert session.get(User, admin_account.id).is_active


async def test_add_a_user_who_can_then_sign_in(user, engine, admin_account):
    await open_admin(user)
    user.find(marker="add-user").click()
    await user.should_see(marker="new-user-name")  # the dialog opens once the handler has re-checked the admin
    user.find(marker="new-user-name").type("Cleo")
    user.find(marker="new-user-email").type("cleo@example.com")
    user.find(marker="new-user-password").type(PASSWORD)
    set_value(user, "new-user-plan", "pro")
    user.find(marker="create-user").click()
    await user.should_see("Added cleo@example.com. Share the password with them privately.", retries=30)
    with session_scope(engine.db) as session:
        cleo = authenticate_password(session, "cleo@example.com", PASSWORD)
        assert not cleo.is_admin and session.get(Workspace, cleo.workspace_id).plan_slug == "pro"


async def test_plans_create_edit_and_delete(user, engine, admin_account):
    await open_admin(user, "plans")
    user.find(marker="new-plan").click()
    await user.should_see(marker="plan-slug")  # the dialog opens once the handler has re-checked the admin
    user.find(marker="plan-slug").type("team")
    user.find(marker="plan-name").type("Team")
    set_value(user, "plan-requests_per_day", 500)
    set_value(user, "plan-storage", True)
    user.find(marker="save-plan").click()
    await user.should_see("Plan saved.")
    await user.should_see(marker="plan-card-team")
    with session_scope(engine.db) as session:
        team = session.get(Plan, "team")
    assert (team.name, team.requests_per_day, team.storage_enabled) == ("Team", 500, True)

    user.find(marker="edit-plan-team").click()
    await user.should_see("Edit Team")  # the edit dialog, in place of the closed one
    set_value(user, "plan-monthly_credits", 1234)
    user.find(marker="save-plan").click()
    await eventually(lambda: plan_of(engine, "team").monthly_credits == 1234)  # "Plan saved." shows from before

    user.find(marker="delete-plan-owner").click()  # the admin's own workspace is on it
    await user.should_see("workspace(s) are on the 'owner' plan")
    user.find(marker="delete-plan-team").click()
    await user.should_see("Deleted the Team plan.")
    with session_scope(engine.db) as session:
        assert session.get(Plan, "team") is None and session.get(Plan, "owner") is not None


async def test_server_settings(user, engine, admin_account):
    await open_admin(user, "server")
    user.find(marker="cors-strict").click()
    user.find(marker="cors-origins").type("not an origin")
    user.find(marker="save-cors").click()
    await user.should_see("Not an origin (scheme://host[:port]): not an origin")
    assert engine.runtime.get("cors_strict") is False
    user.find(marker="cors-origins").clear().type("https://shop.example.com/\nhttp://localhost:3000")
    user.find(marker="save-cors").click()
    await eventually(lambda: engine.runtime.get("cors_strict") is True)
    assert engine.runtime.get("cors_origins") == ["https://shop.example.com", "http://localhost:3000"]

    set_value(user, "max-batch-size", 3)
    user.find(marker="save-batch").click()
    await eventually(lambda: engine.runtime.get("max_batch_size") == 3)

    user.find(marker="storage-enabled").click()
    await eventually(lambda: engine.runtime.get("storage_enabled") is False)

    set_value(user, "text-provider", "openai")
    user.find(marker="text-base-url").type("http://127.0.0.1:9/v1")
    user.find(marker="text-model").type("tiny-llm")
    user.find(marker="save-text-model").click()
    await eventually(lambda: engine.runtime.get("text_model")["provider"] == "openai")
    assert engine.runtime.get("text_model") == {"provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                "model": "tiny-llm"}
    set_value(user, "text-provider", "builtin")
    user.find(marker="save-text-model").click()
    await eventually(lambda: engine.runtime.get("text_model") == {"provider": "builtin"})
    user.find(marker="try-text-model").click()
    await user.should_see(content="builtin: a cat on a windowsill", retries=20)


async def test_models_pull_load_and_unload(user, engine, admin_account):
    await open_admin(user, "models")
    await user.should_see(content="proprietary model with no open weights")
    user.find(marker="load-tiny-flux").click()
    await user.should_see(marker="unload-tiny-flux", retries=50)
    assert "tiny-flux" in [p.spec.slug for p in engine.pipelines.loaded()]
    await user.should_see(content="of ")  # memory use against the budget
    user.find(marker="unload-tiny-flux").click()
    await user.should_see(marker="load-tiny-flux", retries=20)
    assert engine.pipelines.loaded() == []
    user.find(marker="pull-tiny-sd").click()
    await user.should_see("tiny-sd is ready.", retries=50)
    user.find(marker="pull-flux-schnell").click()  # offline here: a clear message, no crash
    await user.should_see("cannot pull", retries=50)


async def test_a_demoted_admins_open_page_can_change_nothing(user, engine, admin_account, member_account):
    await open_admin(user)
    with session_scope(engine.db) as session:
        other = session.exec(select(User).where(User.email == BOB)).one()
    set_user(engine, other, is_admin=True)
    set_user(engine, admin_account, is_admin=False)  # demoted while the page is open
    user.find(marker=f"suspend-{BOB}").click()
    await user.should_see("Administrators only.")
    assert not workspace_of(engine, member_account).suspended


async def test_model_aliases(user, engine, admin_account):
    await open_admin(user, "models")
    await user.should_see(content="Model aliases")
    set_value(user, "alias-slug", "flux-2-pro")
    set_value(user, "alias-target", "tiny-flux")
    user.find(marker="save-alias").click()
    await user.should_see("flux-2-pro now runs tiny-flux.")
    assert engine.model_aliases() == {"flux-2-pro": "tiny-flux"}
    await user.should_see(marker="alias-flux-2-pro")
    user.find(marker="remove-alias-flux-2-pro").click()
    await user.should_see("Removed the alias flux-2-pro.")
    assert engine.model_aliases() == {}


async def test_an_admin_resets_a_users_password(user, engine, member_account):
    await open_admin(user)
    user.find(marker=f"reset-password-{BOB}").click()
    await user.should_see(marker="reset-password-dialog")
    user.find(marker="reset-password-value").type("short")
    user.find(marker="reset-password-save").click()
    await user.should_see("password must be at least 8 characters")
    user.find(marker="reset-password-generate").click()
    (field,) = user.find(marker="reset-password-value").elements
    await eventually(lambda: len(field.value or "") >= 12)
    new_password = field.value
    user.find(marker="reset-password-save").click()
    await user.should_see(f"Password of {BOB} reset.")
    with session_scope(engine.db) as session:
        assert authenticate_password(session, BOB, new_password).id == member_account.id


async def test_a_huge_credit_number_is_refused_with_a_message(user, engine, member_account):
    await open_admin(user)
    set_value(user, f"credits-{BOB}", 10**20)
    user.find(marker=f"set-credits-{BOB}").click()
    await user.should_see("credits must be a whole number from 0 to 2,147,483,647")
    assert workspace_of(engine, member_account).credits != 10**20


async def test_the_admin_queue_shows_everyones_jobs_and_cancels_them(user, engine, member_account):
    import threading

    from engine.generation.params import GenerationParams

    release = threading.Event()
    held = submit_held(engine, member_account, "held", release)
    waiting = engine.submit_generation(member_account, GenerationParams(prompt="bob's picture", model="tiny-sd"))
    try:
        await open_admin(user, "queue")
        await user.should_see(marker=f"queued-{waiting.id}", retries=50)
        await user.should_see(content=f"{BOB} · tiny-sd · Queued behind 1")
        user.find(marker=f"cancel-{waiting.id}").click()
        await eventually(lambda: waiting.future.done(), 30)
    finally:
        release.set()
    await eventually(lambda: held.future.done(), 30)
    await user.should_see(content="nothing running", retries=50)


async def test_vendor_providers_keys_routes_prices_and_test(user, engine, admin_account):
    from tests.providers.vendors import BflStandIn

    bfl = BflStandIn()
    try:
        await open_admin(user, "server")
        user.find(marker="provider-key-bfl").type(bfl.key)
        user.find(marker="provider-url-bfl").clear().type(bfl.base)
        set_value(user, "price-small-flux-2-pro", 9)
        user.find(marker="save-provider-bfl").click()
        await eventually(lambda: (engine.runtime.get("provider_bfl") or {}).get("api_key") == bfl.key)
        assert engine.runtime.get("provider_bfl")["base_url"] == bfl.base
        await eventually(lambda: engine.runtime.get("provider_prices").get("flux-2-pro") == [9, 10])
        user.find(marker="test-provider-bfl").click()
        await user.should_see("BFL API answered: 1234.5 credits left", retries=30)
        assert engine.route_for("flux-2-pro").price == (9, 10)
        from studio.widgets import model_choices

        (choice,) = [c for c in model_choices(engine) if c.spec.slug == "flux-2-pro"]
        assert choice.usable and choice.label == "FLUX.2 [pro] · via BFL API"
        user.find(marker="route-flux-2-pro").click()  # off
        user.find(marker="save-provider-bfl").click()
        await eventually(lambda: engine.runtime.get("provider_routes").get("flux-2-pro") == "")
        assert engine.route_for("flux-2-pro") is None
    finally:
        bfl.close()
