"""Accounts as the API, the studio and the CLI use them: each call opens and closes its own session, so
callers never touch the database (and can run a call off the event loop as one unit)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import select

from engine.accounts import admin
from engine.accounts.users import (
    create_api_key,
    create_user,
    hash_password,
    list_api_keys,
    normalize_email,
    revoke_api_key,
    revoke_sessions,
    verify_password,
)
from engine.data.db import read_scope, session_scope
from engine.data.tables import ApiKey, User
from engine.errors import InvalidRequest, NotFound


class Accounts:
    def __init__(self, db: Engine):
        self._db = db

    def user(self, user_id: str) -> User | None:
        with read_scope(self._db) as session:
            return session.get(User, user_id)

    def active_user(self, user_id: str) -> User | None:
        user = self.user(user_id)
        return user if user is not None and user.is_active else None

    def needs_first_run(self) -> bool:
        with read_scope(self._db) as session:
            return admin.needs_first_run(session)

    def create_first_admin(self, email: str, password: str, name: str = "") -> User:
        with session_scope(self._db) as session:
            return admin.create_first_admin(session, email, password, name)

    def set_preferences(self, user_id: str, **changes) -> User:
        with session_scope(self._db) as session:
            user = session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            user.preferences = {**(user.preferences or {}), **changes}  # a new dict, so the JSON column is saved
            session.add(user)
            session.commit()
            session.refresh(user)
            return user

    def change_password(self, user_id: str, current: str, new: str) -> User:
        """Set a new password after checking the current one (a user without one may set one)."""
        password_hash = hash_password(new)  # refuses a too-short password before anything else
        with session_scope(self._db) as session:
            user = session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            if user.password_hash and not verify_password(user.password_hash, current):
                raise InvalidRequest("the current password is wrong", field="current_password")
            user.password_hash = password_hash
            user.token_version += 1  # a new password signs every other session out
            session.add(user)
            session.commit()
            session.refresh(user)
            return user

    def revoke_sessions(self, user_id: str) -> None:
        """Sign the user out everywhere: every session token and studio session stops working."""
        with session_scope(self._db) as session:
            revoke_sessions(session, user_id)

    def api_keys(self, user_id: str | None = None) -> list[ApiKey]:
        with read_scope(self._db) as session:
            return list_api_keys(session, user_id)

    def create_api_key(self, user_id: str, name: str = "") -> tuple[ApiKey, str]:
        with session_scope(self._db) as session:
            user = session.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            return create_api_key(session, user, name)

    def revoke_api_key(self, key_ref: str, user_id: str | None = None) -> ApiKey:
        """Revoke by id or prefix; with ``user_id``, only ever that user's key."""
        with session_scope(self._db) as session:
            return revoke_api_key(session, key_ref, user_id=user_id)

    def has_api_keys(self) -> bool:
        with read_scope(self._db) as session:
            return session.exec(select(ApiKey.id).limit(1)).first() is not None

    def emails(self) -> dict[str, str]:
        with read_scope(self._db) as session:
            return {user.id: user.email for user in session.exec(select(User)).all()}

    def key_for_owner(self, email: str, key_name: str, *, name: str = "", admin_if_new: bool = False,
                      plan_slug: str | None = None) -> tuple[User, ApiKey, str]:
        """A new key for ``email``, creating the owner if new. The first owner on a box is its admin, on the
        owner plan (the person who runs the box is not rate-limited on their own machine); others get
        ``plan_slug`` or the free plan."""
        with session_scope(self._db) as session:
            user = session.exec(select(User).where(User.email == normalize_email(email))).first()
            if user is None:
                no_admin_yet = session.exec(select(User).where(User.is_admin)).first() is None
                is_admin = admin_if_new or no_admin_yet
                plan = plan_slug or (admin.FIRST_ADMIN_PLAN if no_admin_yet else "free")
                user = create_user(session, email, name=name or email.split("@")[0], is_admin=is_admin,
                                   plan_slug=plan)
            key, full_key = create_api_key(session, user, key_name)
            return user, key, full_key

    def user_by_email(self, email: str, *, create_name: str | None = None) -> User | None:
        """The user with ``email``; with ``create_name``, created (as a plain user) when missing."""
        with session_scope(self._db) as session:
            user = session.exec(select(User).where(User.email == normalize_email(email))).first()
            if user is None and create_name is not None:
                user = create_user(session, email, name=create_name)
            return user
