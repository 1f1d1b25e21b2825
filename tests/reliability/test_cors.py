"""CORS: a page on another origin may call the public API with a Bearer key and read every answer, errors
included; it can never act or read with the studio's cookies. API auth is Bearer only, credentials are never
allowed cross-origin, and studio paths send no CORS headers at all."""

import httpx
import pytest

from engine.accounts.users import hash_password
from engine.generation.params import GenerationParams
from tests.api.helpers import SMALL, set_plan, set_user, set_workspace
from tests.conftest import make_user
from tests.studio.conftest import (  # noqa: F401  (fixtures of the studio's simulated browser)
    admin_account,
    anyio_backend,
    member_account,
    sign_in,
    user,
)

FOREIGN = "https://evil.example"
PASSWORD = "correct horse battery staple"


def assert_public_cors(response) -> None:
    assert response.headers["access-control-allow-origin"] == "*", (response.status_code, response.headers)
    assert "access-control-allow-credentials" not in response.headers
    assert "Origin" in response.headers["vary"]


def test_every_api_answer_is_readable_cross_origin_with_a_key(client, auth, user_and_key, engine, monkeypatch):
    set_plan(engine, user_and_key[0], requests_per_minute=1)
    set_workspace(engine, user_and_key[0], credits=10)
    origin = {"Origin": FOREIGN}
    answers = {
        "ok": client.get("/api/v1/usage", headers=auth | origin),
        "no key": client.get("/api/v1/usage", headers=origin),
        "not found": client.get("/api/v1/jobs/job_nope", headers=auth | origin),
        "unknown path": client.get("/api/v1/nope", headers=origin),
        "wrong method": client.delete("/api/v1/models", headers=origin),
        "invalid": client.post("/api/v1/generate", json={"prompt": ""}, headers=auth | origin),
        "too large": client.post("/api/v1/generate", content=b"x" * (17 * 1024 * 1024),
                                 headers=auth | origin | {"content-type": "application/json"}),
    }
    small = {"prompt": "x", "model": "tiny-sd", "width": 256, "height": 256, "steps": 1}
    client.post("/api/v1/generate", json=small, headers=auth)
    answers["rate limited"] = client.post("/api/v1/generate", json=small, headers=auth | origin)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine.meter, "usage", boom)
    answers["internal error"] = client.get("/api/v1/usage", headers=auth | origin)
    expected = {"ok": 200, "no key": 401, "not found": 404, "unknown path": 404, "wrong method": 405,
                "invalid": 422, "too large": 413, "rate limited": 429, "internal error": 500}
    assert {name: r.status_code for name, r in answers.items()} == expected
    for response in answers.values():
        assert_public_cors(response)
    # The headers a client needs to react are exposed to the foreign page.
    exposed = answers["rate limited"].headers["access-control-expose-headers"]
    assert "Retry-After" in exposed and "X-Request-ID" in exposed


def test_preflight_allows_bearer_auth_but_never_credentials(client):
    response = client.options("/api/v1/usage", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "GET",
                                                        "Access-Control-Request-Headers": "authorization, cookie"})
    assert response.status_code == 204 and response.headers["access-control-allow-origin"] == "*"
    allowed = [h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")]
    assert "authorization" in allowed and "cookie" not in allowed
    assert "access-control-allow-credentials" not in response.headers


def test_cookies_never_authenticate_the_api(client, engine):
    """Whatever a browser would attach by itself (cookies) is ignored: only an Authorization header counts."""
    owner, _ = make_user(engine, "cookie@example.com")
    set_user(engine, owner, password_hash=hash_password(PASSWORD))
    token = client.post("/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}).json()["data"]
    jwt = token["access_token"]
    for name in ("imagestudio_session", "session", "access_token", "Authorization", "token"):
        client.cookies.clear()
        client.cookies.set(name, jwt if name != "Authorization" else f"Bearer {jwt}")
        for path in ("/api/v1/auth/me", "/api/v1/usage", "/api/v1/images"):
            response = client.get(path, headers={"Origin": FOREIGN})
            assert response.status_code == 401, (name, path, response.text)
    client.cookies.clear()
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {jwt}"}).status_code == 200


@pytest.mark.anyio
async def test_the_studio_session_cookie_opens_nothing_cross_origin(user, member_account, engine):  # noqa: F811
    image = engine.generate(member_account, GenerationParams(prompt="a private picture", model="tiny-sd", **SMALL),
                            store=True)
    await sign_in(user, member_account.email)  # the simulated browser now holds the studio's session cookie
    assert "imagestudio_session" in user.http_client.cookies
    # The whole server (API and mounted studio) as a browser reaches it, with that cookie.
    transport = httpx.ASGITransport(app=user.fastapi_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                 cookies=user.http_client.cookies) as browser:
        media = f"/studio/media/{image.image_id}.png"
        origin = {"Origin": FOREIGN}

        same_site = await browser.get(media)
        assert same_site.status_code == 200 and same_site.content == image.png  # the cookie works for the studio...
        cross = await browser.get(media, headers=origin)
        assert not [h for h in cross.headers if h.lower().startswith("access-control-")]  # ...unreadable elsewhere
        preflight = await browser.options(media, headers=origin | {"Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in preflight.headers
        page = await browser.get("/", headers=origin)
        assert page.status_code == 200 and "access-control-allow-origin" not in page.headers

        for path in ("/api/v1/auth/me", "/api/v1/usage", f"/api/v1/images/{image.image_id}"):
            api = await browser.get(path, headers=origin)  # the signed-in cookie goes along and counts for nothing
            assert api.status_code == 401, (path, api.text)
            assert "access-control-allow-credentials" not in api.headers
