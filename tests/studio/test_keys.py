"""API keys: created and shown once, listed by prefix, revoked; snippets for this server."""

import pytest

from engine.accounts.users import list_api_keys
from engine.data.db import session_scope
from tests.studio.conftest import USER_EMAIL, sign_in, value_of

pytestmark = pytest.mark.anyio


async def test_create_use_and_revoke_a_key(user, api, engine, member_account):
    await sign_in(user, USER_EMAIL, path="/login?next=/keys")
    await user.should_see("No keys yet")
    user.find(marker="key-name").type("my-wordpress-site")
    user.find(marker="create-key").click()
    await user.should_see(marker="new-key-dialog")
    await user.should_see(content="only time the full key is shown")
    full_key = value_of(user, "new-key")
    assert full_key.startswith("sk_live_") and len(full_key) > 40
    user.find(marker="copy-key").click()
    await user.should_see("Key copied.")
    user.find(marker="close-key").click()

    with session_scope(engine.db) as session:
        (key,) = list_api_keys(session, member_account.id)
    assert key.name == "my-wordpress-site" and full_key not in key.key_hash
    await user.should_see(content=f"sk_live_{key.prefix}…")
    await user.should_see(content="last used never")

    headers = {"Authorization": f"Bearer {full_key}"}
    assert (await api.get("/api/v1/usage", headers=headers)).status_code == 200

    user.find(marker=f"revoke-{key.prefix}").click()
    await user.should_see(f"Revoke sk_live_{key.prefix}…?")
    user.find(marker="confirm-revoke").click()
    await user.should_see(f"Revoked sk_live_{key.prefix}….")
    await user.should_see(content="revoked")
    response = await api.get("/api/v1/usage", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


async def test_snippets_use_this_servers_url(user, engine, member_account):
    await sign_in(user, USER_EMAIL, path="/login?next=/keys")
    await user.should_see(content="http://test/api/v1")
    for marker in ("snippet-bash", "snippet-javascript", "snippet-php"):
        (code,) = user.find(marker=marker).elements
        assert "http://test/api/v1/generate" in code.content and "IMAGESTUDIO_API_KEY" in code.content
    (php,) = user.find(marker="snippet-php").elements
    assert "wp_remote_post" in php.content


async def test_snippets_prefer_the_configured_public_url(user, engine, member_account):
    engine.settings.public_url = "https://images.example.com/"
    await sign_in(user, USER_EMAIL, path="/login?next=/keys")
    await user.should_see(content="https://images.example.com/api/v1")


async def test_key_names_are_limited(user, member_account):
    await sign_in(user, USER_EMAIL, path="/login?next=/keys")
    user.find(marker="key-name").type("x" * 101)
    user.find(marker="create-key").click()
    await user.should_see("key name must be at most 100 characters")


async def test_a_keys_webhook_is_set_its_secret_shown_once_and_deliveries_listed(user, engine, member_account):
    key, _ = engine.accounts.create_api_key(member_account.id, "site")
    engine.webhooks.allow_private = False  # the default
    await sign_in(user, USER_EMAIL, path="/login?next=/keys")
    await user.should_see("No deliveries yet")

    user.find(marker=f"webhook-{key.prefix}").click()
    await user.should_see(marker="webhook-dialog")
    user.find(marker="webhook-url").type("http://127.0.0.1:9/hooks")  # a private address: refused
    user.find(marker="save-webhook").click()
    await user.should_see("url URL points to a private or local address")
    engine.webhooks.allow_private = True  # an intranet install
    user.find(marker="save-webhook").click()
    await user.should_see(marker="webhook-secret")
    secret = value_of(user, "webhook-secret")
    assert secret.startswith("whsec_")
    stored = engine.webhooks.key_by_prefix(key.prefix)
    assert stored.webhook_url == "http://127.0.0.1:9/hooks" and secret not in stored.webhook_secret
    user.find(marker="close-webhook").click()
    await user.should_see(content="webhook http://127.0.0.1:9/hooks")

    delivery = engine.webhooks.enqueue(key.id, member_account.id, "job_1", "http://127.0.0.1:9/hooks",
                                       "image.generation.succeeded", {"id": "job_1"})
    user.find(marker="refresh-deliveries").click()
    await user.should_see(marker=f"delivery-{delivery}")
    await user.should_see(content="image.generation.succeeded · job job_1")


async def test_the_keys_page_links_the_wordpress_plugin(user, api, member_account):
    await sign_in(user, USER_EMAIL, path="/login?next=/keys")
    (link,) = user.find(marker="wordpress-plugin").elements
    response = await api.get(link.props["href"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "image-studio/image-studio.php" in names and "image-studio/js/block.js" in names


async def test_the_snippets_use_a_model_that_runs_on_this_box(user, engine, member_account):
    """Defect: the ready-made snippet named the default flux-schnell, whose weights are not here."""
    await sign_in(user, USER_EMAIL, path="/login?next=/keys")
    (code,) = user.find(marker="snippet-bash").elements
    assert '"model": "flux-schnell"' not in code.content and '"model": "tiny-' in code.content
