"""API keys, session tokens, the signing secret and passwords: stored safely, checked safely, revoked at once."""

import asyncio
import hmac
import stat
from datetime import datetime, timedelta

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from engine.accounts.throttle import LoginThrottle
from engine.accounts.users import create_api_key, hash_key, hash_password, revoke_api_key
from engine.config import Settings
from engine.data.db import session_scope
from engine.data.tables import ApiKey, SignInAttempt, User
from engine.errors import InvalidRequest, RateLimited
from engine.service import ImageEngine
from tests.api.helpers import SMALL, set_plan, set_user
from tests.conftest import make_user

PASSWORD = "correct horse battery staple"


def database_bytes(engine) -> bytes:
    """Everything SQLite has on disk: the database file and its write-ahead log."""
    folder = engine.settings.data_dir
    return b"".join(p.read_bytes() for p in folder.glob("imagestudio.db*"))


def test_keys_are_stored_only_as_hashes(client, engine):
    user, key = make_user(engine, "k@example.com")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/usage", headers=headers).status_code == 200  # used, logged, last_used_at set
    stored = database_bytes(engine)
    secret_part = key[len("sk_live_") + 8:]  # the lookup prefix (8 chars) is shown to users by design
    assert key.encode() not in stored and secret_part.encode() not in stored
    with session_scope(engine.db) as session:
        row = session.exec(select(ApiKey).where(ApiKey.user_id == user.id)).one()
    assert row.key_hash == hash_key(key) and len(row.key_hash) == 64


@pytest.fixture
def compare_calls(monkeypatch):
    """Records every hmac.compare_digest call (and still compares)."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # engine.accounts calls hmac.compare_digest
    return calls


def test_keys_are_compared_in_constant_time(client, engine, compare_calls):
    _, key = make_user(engine, "c@example.com")
    wrong_secret = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    unknown_prefix = "sk_live_" + "Z" * 40
    for presented, status in ((key, 200), (wrong_secret, 401), (unknown_prefix, 401)):
        compare_calls.clear()
        assert client.get("/api/v1/usage", headers={"Authorization": f"Bearer {presented}"}).status_code == status
        # One digest comparison for every presented key, even for a prefix no key has: timing tells nothing.
        assert len(compare_calls) == 1 and all(len(side) == 64 for side in compare_calls[0])


def test_a_revoked_key_fails_on_the_very_next_request(client, engine):
    user, key = make_user(engine, "r@example.com")
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(3):  # warm whatever could be cached
        assert client.get("/api/v1/usage", headers=headers).status_code == 200
    with session_scope(engine.db) as session:
        revoke_api_key(session, key[:16])
    response = client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    assert response.headers["www-authenticate"] == "Bearer"
    with session_scope(engine.db) as session:  # the owner's other keys keep working
        _, other = create_api_key(session, session.get(User, user.id), "second")
    assert client.get("/api/v1/usage", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_keys_of_a_disabled_account_fail_at_once(client, engine):
    user, key = make_user(engine, "d@example.com")
    set_user(engine, user, is_active=False)
    response = client.get("/api/v1/usage", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401 and "disabled" in response.json()["error"]["message"]


def login(client, email: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def test_session_tokens_expire(client, engine, monkeypatch):
    user, _ = make_user(engine, "s@example.com")
    set_user(engine, user, password_hash=hash_password(PASSWORD))
    engine.settings.jwt_ttl_minutes = 30
    data = login(client, user.email).json()["data"]
    token = {"Authorization": f"Bearer {data['access_token']}"}
    claims = jwt.decode(data["access_token"], engine.keys.session_tokens, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 30 * 60 == data["expires_in"] and claims["typ"] == "session"
    assert client.get("/api/v1/auth/me", headers=token).status_code == 200

    def clock(offset: timedelta):  # the token checker's clock, moved forward
        class Moved(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + offset

        monkeypatch.setattr(jwt.api_jwt, "datetime", Moved)

    clock(timedelta(minutes=29, seconds=50))
    assert client.get("/api/v1/auth/me", headers=token).status_code == 200
    clock(timedelta(minutes=30, seconds=1))
    expired = client.get("/api/v1/auth/me", headers=token)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_the_signing_secret_is_generated_once_kept_private_and_survives_restarts(tmp_path, models_dir, monkeypatch):
    """Generated once into the database (every process on it signs alike), in a data dir only its owner reads."""
    monkeypatch.delenv("IMAGESTUDIO_SECRET_KEY", raising=False)

    def server():
        settings = Settings(_env_file=None, data_dir=tmp_path / "data", models_path=models_dir, device="cpu",
                            default_model="tiny-sd", studio_enabled=False, allow_downloads=False)
        assert settings.secret_key is None
        return TestClient(create_app(engine=ImageEngine(settings), with_studio=False))

    with server() as first:
        user, _ = make_user(first.app.state.engine, "p@example.com")
        set_user(first.app.state.engine, user, password_hash=hash_password(PASSWORD))
        token = login(first, user.email).json()["data"]["access_token"]
    secret = first.app.state.engine.secret_key
    assert len(secret) >= 43 and stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert not list((tmp_path / "data").glob("*secret*")) and not list((tmp_path / "data").glob("*.tmp*"))

    with server() as second:  # a restart: same secret, same sessions
        me = second.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["data"]["email"] == "p@example.com"
        assert second.app.state.engine.secret_key == secret

    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "another-install's-secret-key-32b+",
                        algorithm="HS256")
    with server() as third:
        assert third.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_passwords_are_stored_as_argon2_hashes(client, engine):
    user, _ = make_user(engine, "h@example.com")
    set_user(engine, user, password_hash=hash_password(PASSWORD))
    with session_scope(engine.db) as session:
        stored = session.get(User, user.id).password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert PASSWORD.encode() not in database_bytes(engine)
    assert login(client, user.email).status_code == 200
    with pytest.raises(InvalidRequest):
        hash_password("short")


def test_sign_in_is_throttled_per_address_across_emails(client, engine):
    """Password spraying: failures from one address, over many different emails, stop that address.
    An address gets more room than one email (people share office and proxy addresses)."""
    engine.login_throttle = LoginThrottle(engine.db, free_per_pair=5, max_per_address=8)
    user, _ = make_user(engine, "t@example.com")
    set_user(engine, user, password_hash=hash_password(PASSWORD))
    for i in range(8):
        assert login(client, f"victim{i}@example.com", "Winter2026!").status_code == 401
    blocked = login(client, user.email)  # even the right password of yet another account
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert blocked.json()["error"]["limit"] == "sign-in"


def test_a_success_clears_the_email_but_not_the_address(client, engine):
    engine.login_throttle = LoginThrottle(engine.db, free_per_pair=5, max_per_address=6)
    user, _ = make_user(engine, "u@example.com")
    set_user(engine, user, password_hash=hash_password(PASSWORD))
    for _ in range(4):
        assert login(client, user.email, "wrong-password").status_code == 401
    assert login(client, user.email).status_code == 200  # the right password's own attempt is forgiven
    assert login(client, user.email, "wrong-password").status_code == 401  # the email's count started over...
    assert login(client, "someone@example.com", "wrong-password").status_code == 401
    assert login(client, "someone@example.com", "wrong-password").status_code == 429  # ...the address's did not


def login_from(client, address: str, email: str, password: str = PASSWORD):
    """A sign-in as seen from ``address`` (the TestClient's peer address is fixed: set it per request)."""
    with TestClient(client.app, client=(address, 50000)) as other:
        return other.post("/api/v1/auth/login", json={"email": email, "password": password})


def test_a_stranger_guessing_cannot_lock_the_owner_out(client, engine):
    """Guesses from one address slow that address down on that account; the owner, elsewhere, signs in."""
    user, _ = make_user(engine, "owner@example.com")
    set_user(engine, user, password_hash=hash_password(PASSWORD))
    statuses = [login_from(client, "203.0.113.9", user.email, f"guess-{i}").status_code for i in range(8)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert login_from(client, "198.51.100.7", user.email).status_code == 200  # the owner, from home
    # ...and the owner's success cleared the account's failures: the stranger starts over, free guesses only.
    assert login_from(client, "203.0.113.9", user.email, "guess-x").status_code == 401


def test_the_wait_doubles_with_each_further_failure(engine):
    throttle = LoginThrottle(engine.db, free_per_pair=2)
    for _ in range(2):
        throttle.attempt("w@example.com", "192.0.2.1")
    with pytest.raises(RateLimited) as first:
        throttle.attempt("w@example.com", "192.0.2.1")
    assert 25 <= first.value.retry_after <= 31
    with session_scope(engine.db) as session:  # the first wait is over
        for row in session.exec(select(SignInAttempt)).all():
            row.at = row.at - timedelta(seconds=31)
            session.add(row)
        session.commit()
    throttle.attempt("w@example.com", "192.0.2.1")
    with pytest.raises(RateLimited) as second:
        throttle.attempt("w@example.com", "192.0.2.1")
    assert 55 <= second.value.retry_after <= 61


def test_many_addresses_against_one_account_are_capped(engine):
    throttle = LoginThrottle(engine.db, max_per_account=10)
    for i in range(10):
        throttle.attempt("x@example.com", f"192.0.2.{i}")
    with pytest.raises(RateLimited):
        throttle.attempt("x@example.com", "192.0.2.200")


def test_the_attempts_table_stays_bounded(engine):
    throttle = LoginThrottle(engine.db, max_rows=12)
    for i in range(20):
        throttle.attempt(f"flood{i}@example.com", f"2001:db8::{i:x}")
    throttle.forget_old()
    with session_scope(engine.db) as session:
        assert len(session.exec(select(SignInAttempt)).all()) <= 12


def test_forwarded_for_is_believed_only_from_configured_proxies():
    assert Settings(trusted_proxies=[]).uvicorn_proxy_options() == {"proxy_headers": False}
    assert Settings(trusted_proxies="10.0.0.2, 10.0.0.3").uvicorn_proxy_options() == {
        "proxy_headers": True, "forwarded_allow_ips": "10.0.0.2,10.0.0.3"}


def test_parallel_guesses_cannot_slip_past_the_throttle(client, engine):
    user, _ = make_user(engine, "v@example.com")
    set_user(engine, user, password_hash=hash_password(PASSWORD))

    async def guesses():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*[http.post("/api/v1/auth/login", json={"email": user.email,
                                                                               "password": f"guess-{i:04}"})
                                          for i in range(30)])

    statuses = [r.status_code for r in asyncio.run(guesses())]
    assert statuses.count(401) <= 5, statuses  # at most five passwords were actually tried


def test_idempotency_keys_are_per_user(client, engine):
    """Another user sending the same Idempotency-Key gets their own result, never the first user's."""
    alice, alice_key = make_user(engine, "alice2@example.com")
    bob, bob_key = make_user(engine, "bob2@example.com")
    for user in (alice, bob):
        set_plan(engine, user)
    body = {"prompt": "same body", "model": "tiny-sd", **SMALL}
    first = client.post("/api/v1/generate", json=body, headers={"Authorization": f"Bearer {alice_key}",
                                                                  "Idempotency-Key": "shared-key"})
    second = client.post("/api/v1/generate", json=body, headers={"Authorization": f"Bearer {bob_key}",
                                                                   "Idempotency-Key": "shared-key"})
    assert first.status_code == second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert second.json()["data"]["id"] != first.json()["data"]["id"]
