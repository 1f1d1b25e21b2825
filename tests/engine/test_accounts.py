import pytest
from sqlmodel import select

from engine.accounts.users import authenticate_key, create_api_key, create_user, revoke_api_key
from engine.data.db import session_scope
from engine.data.tables import ApiKey
from engine.errors import InvalidRequest, Unauthenticated


def test_key_is_shown_once_and_stored_only_as_a_hash(engine):
    with session_scope(engine.db) as session:
        user = create_user(session, "Bob@Example.com")
        key, full = create_api_key(session, user, "laptop")
        assert full.startswith("sk_live_") and len(full) == 48
        row = session.exec(select(ApiKey)).one()
        assert full not in (row.key_hash, row.prefix) and full[8:16] == row.prefix
        found_user, found_key = authenticate_key(session, full)
        assert found_user.email == "bob@example.com"
    assert engine.authenticate(full)[0].email == "bob@example.com"
    with session_scope(engine.db) as session:
        assert session.exec(select(ApiKey)).one().last_used_at is not None


def test_wrong_and_revoked_keys_fail(engine):
    with session_scope(engine.db) as session:
        user = create_user(session, "c@example.com")
        _, full = create_api_key(session, user)
        for bad in ("", "sk_live_", "sk_test_" + full[8:], full[:-1] + ("x" if full[-1] != "x" else "y")):
            with pytest.raises(Unauthenticated):
                authenticate_key(session, bad)
        revoke_api_key(session, full[:16] + "…")
        with pytest.raises(Unauthenticated, match="revoked"):
            authenticate_key(session, full)


def test_duplicate_and_invalid_emails(engine):
    with session_scope(engine.db) as session:
        create_user(session, "d@example.com")
        with pytest.raises(InvalidRequest):
            create_user(session, "D@example.com")
        with pytest.raises(InvalidRequest):
            create_user(session, "not-an-email")
