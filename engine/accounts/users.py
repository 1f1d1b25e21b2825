"""Users, workspaces, plans and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from sqlalchemy import update
from sqlmodel import Session, select

from engine.data.db import insert_if_absent
from engine.data.tables import ApiKey, Plan, User, Workspace, utcnow
from engine.errors import InvalidRequest, NotFound, Unauthenticated

KEY_PREFIX = "sk_live_"
_LOOKUP_LEN = 8  # characters after sk_live_ that find the row; shown to users as the key's prefix
_ALPHABET = string.ascii_letters + string.digits

# "No limit" in a plan's integer columns: the largest value both SQLite and PostgreSQL INTEGER hold.
UNLIMITED = 2_147_483_647

DEFAULT_PLANS = (
    # The person who runs the box: nothing they do on their own machine is rate-limited or metered out.
    # Plans with limits are for the keys they hand out (engine/accounts/admin.py FIRST_ADMIN_PLAN).
    Plan(slug="owner", name="Owner", requests_per_minute=UNLIMITED, requests_per_day=UNLIMITED,
         requests_per_month=UNLIMITED, max_concurrent_jobs=UNLIMITED, max_batch_size=UNLIMITED,
         storage_enabled=True, storage_quota_mb=UNLIMITED, monthly_credits=UNLIMITED, price_usd_month=0),
    Plan(slug="free", name="Free", requests_per_minute=10, requests_per_day=50, requests_per_month=1500,
         max_concurrent_jobs=1, max_batch_size=4, storage_enabled=False, storage_quota_mb=0,
         monthly_credits=200, price_usd_month=0),
    Plan(slug="pro", name="Pro", requests_per_minute=60, requests_per_day=1000, requests_per_month=30000,
         max_concurrent_jobs=4, max_batch_size=10, storage_enabled=True, storage_quota_mb=5000,
         monthly_credits=10000, price_usd_month=29),
    Plan(slug="studio", name="Studio", requests_per_minute=300, requests_per_day=10000, requests_per_month=300000,
         max_concurrent_jobs=16, max_batch_size=25, storage_enabled=True, storage_quota_mb=50000,
         monthly_credits=100000, price_usd_month=99),
)


def ensure_default_plans(session: Session) -> None:
    """The built-in plans, where missing. Insert-or-nothing in one statement each: processes starting together
    on an empty database can't collide on a plan's key."""
    for plan in DEFAULT_PLANS:
        insert_if_absent(session, Plan, "slug", **plan.model_dump())
    session.commit()


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320 or email.startswith("@") or any(c.isspace() for c in email):
        raise InvalidRequest("a valid email address is required", field="email")
    return email


def create_user(session: Session, email: str, *, name: str = "", is_admin: bool = False,
                workspace_id: str | None = None, plan_slug: str = "free", password_hash: str | None = None) -> User:
    email = normalize_email(email)
    if session.exec(select(User).where(User.email == email)).first() is not None:
        raise InvalidRequest(f"a user with email {email} already exists", field="email")
    if workspace_id is None:
        plan = session.get(Plan, plan_slug)
        workspace = Workspace(name=name or email, plan_slug=plan_slug, credits=plan.monthly_credits if plan else 0)
        session.add(workspace)
        session.flush()
        workspace_id = workspace.id
    user = User(email=email, name=name, is_admin=is_admin, workspace_id=workspace_id, password_hash=password_hash)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def hash_key(full_key: str) -> str:
    # Keys carry ~240 bits of randomness, so one fast hash is enough (no salt/stretching needed).
    return hashlib.sha256(full_key.encode()).hexdigest()


def create_api_key(session: Session, user: User, name: str = "") -> tuple[ApiKey, str]:
    """Create a key; the full key is returned once and never stored."""
    if len(name) > 100:
        raise InvalidRequest("key name must be at most 100 characters", field="name")
    for _ in range(5):
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(40))
        full_key = KEY_PREFIX + secret
        lookup = secret[:_LOOKUP_LEN]
        if session.exec(select(ApiKey).where(ApiKey.prefix == lookup)).first() is None:
            break
    key = ApiKey(user_id=user.id, name=name, prefix=lookup, key_hash=hash_key(full_key))
    session.add(key)
    session.commit()
    session.refresh(key)
    return key, full_key


def display_prefix(key: ApiKey) -> str:
    return f"{KEY_PREFIX}{key.prefix}…"


def authenticate_key(session: Session, full_key: str) -> tuple[User, ApiKey]:
    """The active user and key for a presented API key, or Unauthenticated."""
    if not full_key.startswith(KEY_PREFIX) or len(full_key) < len(KEY_PREFIX) + _LOOKUP_LEN:
        raise Unauthenticated("invalid API key")
    lookup = full_key[len(KEY_PREFIX):len(KEY_PREFIX) + _LOOKUP_LEN]
    key = session.exec(select(ApiKey).where(ApiKey.prefix == lookup)).first()
    presented = hash_key(full_key)
    # Compare even when no row matched, so timing says nothing about which prefixes exist.
    stored = key.key_hash if key is not None else hash_key("")
    if not hmac.compare_digest(stored, presented) or key is None:
        raise Unauthenticated("invalid API key")
    if key.revoked_at is not None:
        raise Unauthenticated("this API key has been revoked")
    user = session.get(User, key.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("the account for this API key is disabled")
    return user, key


LAST_USED_RESOLUTION_S = 60


def key_use_is_stale(key: ApiKey) -> bool:
    """The key's last use is recorded at most once a minute: a write per request would cost every call a commit."""
    return key.last_used_at is None or (utcnow() - _aware(key.last_used_at)).total_seconds() > LAST_USED_RESOLUTION_S


def record_key_use(session: Session, key_id: str) -> None:
    session.exec(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
    session.commit()


def _aware(moment):
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_api_keys(session: Session, user_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list(session.exec(query).all())


def revoke_api_key(session: Session, key_ref: str, user_id: str | None = None) -> ApiKey:
    """Revoke by id, lookup prefix, or shown prefix (``sk_live_abcd1234…``)."""
    ref = key_ref.strip().rstrip("…").removeprefix(KEY_PREFIX)
    query = select(ApiKey).where((ApiKey.id == key_ref) | (ApiKey.prefix == ref[:_LOOKUP_LEN]))
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    key = session.exec(query).first()
    if key is None:
        raise NotFound(f"no API key matches '{key_ref}'")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        session.commit()
    return key


def plan_for(session: Session, user: User) -> Plan | None:
    workspace = session.get(Workspace, user.workspace_id)
    if workspace is None or workspace.plan_slug is None:
        return None
    return session.get(Plan, workspace.plan_slug)


# -- passwords and browser-session tokens ------------------------------------------------------

def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    if len(password) < 8:
        raise InvalidRequest("password must be at least 8 characters", field="password")
    if len(password) > 1024:
        raise InvalidRequest("password must be at most 1024 characters", field="password")
    return PasswordHasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if not password_hash:
        return False
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: list[str] = []


def authenticate_password(session: Session, email: str, password: str) -> User:
    try:
        email = normalize_email(email)
    except InvalidRequest:
        email = ""
    user = session.exec(select(User).where(User.email == email)).first() if email else None
    if user is None:
        # Spend the same time as a real check, so response time doesn't reveal which emails exist.
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_password("not-a-real-password"))
        verify_password(_DUMMY_HASH[0], password)
        raise Unauthenticated("wrong email or password")
    if not verify_password(user.password_hash, password):
        raise Unauthenticated("wrong email or password")
    if not user.is_active:
        raise Unauthenticated("this account is disabled")
    return user


def create_access_token(user: User, secret: str, ttl_minutes: int) -> str:
    import jwt

    now = utcnow()
    claims = {"sub": user.id, "iat": int(now.timestamp()), "exp": int(now.timestamp()) + ttl_minutes * 60,
              "typ": "session", "ver": user.token_version}
    return jwt.encode(claims, secret, algorithm="HS256")


def user_from_access_token(session: Session, token: str, secret: str) -> User:
    import jwt

    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the session token has expired; sign in again") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated("invalid API key or session token") from exc
    user = session.get(User, claims["sub"])
    if user is None or not user.is_active or claims.get("typ") != "session":
        raise Unauthenticated("invalid API key or session token")
    if claims.get("ver", 0) != user.token_version:
        raise Unauthenticated("the session token was revoked; sign in again")
    return user


def revoke_sessions(session: Session, user_id: str) -> None:
    """Every session token and studio session of the user stops working (API keys are revoked one by one)."""
    session.exec(update(User).where(User.id == user_id).values(token_version=User.token_version + 1))
    session.commit()
