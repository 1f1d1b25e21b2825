import time

import jwt

from engine.accounts.users import hash_password
from tests.api.helpers import SMALL, set_user

FOREIGN = "https://shop.example.org"


def test_preflight_from_a_foreign_origin_open_mode(client):
    response = client.options("/api/v1/generate", headers={
        "Origin": FOREIGN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in response.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["x-request-id"].startswith("req_")  # every response has one, preflights too
    traced = client.options("/api/v1/generate", headers={
        "Origin": FOREIGN, "Access-Control-Request-Method": "POST", "X-Request-ID": "trace-1234567"})
    assert traced.headers["x-request-id"] == "trace-1234567"


def test_foreign_origin_reads_api_responses_with_a_key_but_never_with_credentials(client, auth):
    response = client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=auth | {"Origin": FOREIGN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "RateLimit-Remaining" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in response.headers
    studio = client.get("/docs", headers={"Origin": FOREIGN})
    assert "access-control-allow-origin" not in studio.headers  # non-API pages are same-origin only


def test_strict_mode_only_allows_configured_origins(client, engine):
    engine.runtime.set("cors_strict", True)
    engine.runtime.set("cors_origins", ["https://mysite.example"])
    preflight = {"Access-Control-Request-Method": "POST"}
    denied = client.options("/api/v1/generate", headers={"Origin": FOREIGN} | preflight)
    assert denied.status_code == 403 and "access-control-allow-origin" not in denied.headers
    assert denied.headers["x-request-id"].startswith("req_")
    allowed = client.options("/api/v1/generate", headers={"Origin": "https://mysite.example"} | preflight)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "https://mysite.example"
    assert "Origin" in allowed.headers["vary"]
    simple = client.get("/api/v1/models", headers={"Origin": FOREIGN})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_login_gives_a_jwt_accepted_where_keys_are(client, user_and_key, engine):
    user = user_and_key[0]
    set_user(engine, user, password_hash=hash_password("correct horse battery"))
    bad = client.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong password"})
    assert bad.status_code == 401
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    assert unknown.status_code == 401 and unknown.json()["error"]["message"] == bad.json()["error"]["message"]
    login = client.post("/api/v1/auth/login", json={"email": user.email.upper(), "password": "correct horse battery"})
    assert login.status_code == 200
    token = login.json()["data"]["access_token"]
    session = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=session).json()["data"]["email"] == user.email
    assert client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=session).status_code == 200


def test_expired_or_forged_tokens_fail(client, user_and_key, engine):
    user = user_and_key[0]
    secret = engine.keys.session_tokens
    expired = jwt.encode({"sub": user.id, "exp": int(time.time()) - 5, "typ": "session"}, secret, algorithm="HS256")
    forged = jwt.encode({"sub": user.id, "exp": int(time.time()) + 600, "typ": "session"}, "guess", algorithm="HS256")
    none_alg = jwt.encode({"sub": user.id, "exp": int(time.time()) + 600, "typ": "session"}, None, algorithm="none")
    # Signed with the server secret itself, not the session-token key derived from it: refused too.
    raw_secret = jwt.encode({"sub": user.id, "exp": int(time.time()) + 600, "typ": "session"}, engine.secret_key,
                            algorithm="HS256")
    for token, fragment in ((expired, "expired"), (forged, "invalid"), (none_alg, "invalid"), (raw_secret, "invalid")):
        response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and fragment in response.json()["error"]["message"]


def test_brute_force_sign_in_is_throttled(client, user_and_key, engine):
    user = user_and_key[0]
    set_user(engine, user, password_hash=hash_password("correct horse battery"))
    for _ in range(5):
        assert client.post("/api/v1/auth/login", json={"email": user.email, "password": "nope-nope"}).status_code == 401
    blocked = client.post("/api/v1/auth/login", json={"email": user.email, "password": "correct horse battery"})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


def test_api_log_records_requests_for_their_owner(client, auth):
    client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=auth)
    client.post("/api/v1/generate", json={"prompt": ""}, headers=auth)
    logs = client.get("/api/v1/logs", headers=auth).json()["data"]["logs"]
    generate_ok = next(entry for entry in logs if entry["status"] == 200 and entry["endpoint"] == "/api/v1/generate")
    assert generate_ok["key_prefix"] == auth["Authorization"][15:23] and generate_ok["credits"] == 1
    assert generate_ok["method"] == "POST" and generate_ok["request_id"].startswith("req_")
    assert any(entry["status"] == 422 for entry in logs)


def test_product_and_logo_variants(client, auth):
    for variant, word in (("product", "product photography"), ("logo", "vector logo")):
        response = client.post(f"/api/v1/generate/{variant}", json={"prompt": "a ceramic mug", **SMALL},
                               headers=auth)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert word in data["prompt"] and "a ceramic mug" in data["prompt"] and data["variant"] == variant
        assert data["negative_prompt"]
    batch = client.post("/api/v1/generate/logo", json={"items": [{"prompt": "a fox"}, {"prompt": "an owl"}], **SMALL},
                        headers=auth)
    assert batch.json()["data"]["succeeded"] == 2
