"""Admin operations: first-run setup, accounts, workspaces (suspend, plan, credits) and plans.

Engine functions taking a Session, and ``Administration``, the same operations each in a session of its
own, for the studio's admin page and any future admin API (which check that the caller is an admin first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from engine.accounts.users import create_user, hash_password, normalize_email
from engine.data.db import read_scope, serialize, session_scope
from engine.data.tables import ImageRecord, Plan, User, Workspace
from engine.errors import Conflict, InvalidRequest, NotFound

FIRST_ADMIN_PLAN = "owner"  # the person who runs the box: no request limits (engine/accounts/users.py)
_PLAN_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Integer columns are 32-bit on PostgreSQL: a bigger number is a clear 422, never an overflow in the database.
MAX_NUMBER = 2**31 - 1
_PLAN_NUMBERS = ("requests_per_minute", "requests_per_day", "requests_per_month", "max_concurrent_jobs",
                 "max_batch_size", "storage_quota_mb", "monthly_credits")


# -- first run -----------------------------------------------------------------------------------

def needs_first_run(session: Session) -> bool:
    """True until some admin can sign in with a password (a key-only admin from the CLI doesn't count)."""
    return session.exec(select(User.id).where(User.is_admin, col(User.password_hash).is_not(None))
                        .limit(1)).first() is None


def create_first_admin(session: Session, email: str, password: str, name: str = "") -> User:
    """The first admin who can sign in. An account of the same email without a password (made by
    ``imagestudio keys create``) is claimed rather than duplicated."""
    password_hash = hash_password(password)  # validates the password before anything is written
    email = normalize_email(email)
    # One transaction holding the first-run lock (SQLite: the write lock every transaction takes; PostgreSQL:
    # an advisory lock): browsers racing through first run, on any process, can't both become the first admin.
    serialize(session, "first-run")
    if not needs_first_run(session):
        raise Conflict("this server already has an administrator; sign in instead")
    existing = session.exec(select(User).where(User.email == email)).first()
    if existing is not None:
        existing.password_hash, existing.is_admin, existing.is_active = password_hash, True, True
        existing.name = name or existing.name
        session.add(existing)
        session.commit()
        session.refresh(existing)
        return existing
    plan = FIRST_ADMIN_PLAN if session.get(Plan, FIRST_ADMIN_PLAN) else "free"
    return create_user(session, email, name=name, is_admin=True, plan_slug=plan, password_hash=password_hash)


def create_account(session: Session, email: str, password: str, *, name: str = "", is_admin: bool = False,
                   plan_slug: str = "free") -> User:
    """A user who signs in to the studio with a password, in a workspace of their own."""
    if session.get(Plan, plan_slug) is None:
        raise NotFound(f"no plan '{plan_slug}'")
    return create_user(session, email, name=name, is_admin=is_admin, plan_slug=plan_slug,
                       password_hash=hash_password(password))


# -- users and workspaces ------------------------------------------------------------------------

@dataclass
class AccountRow:
    """One user with their workspace, for the admin's table."""

    user: User
    workspace: Workspace
    images: int
    image_bytes: int


def list_accounts(session: Session, query: str | None = None) -> list[AccountRow]:
    statement = select(User, Workspace).join(Workspace, Workspace.id == User.workspace_id).order_by(User.created_at)
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        statement = statement.where(col(User.email).ilike(pattern, escape="\\")
                                    | col(User.name).ilike(pattern, escape="\\"))
    rows = session.exec(statement).all()
    stats = {user_id: (count, size) for user_id, count, size in session.exec(
        select(ImageRecord.user_id, func.count(), func.coalesce(func.sum(ImageRecord.bytes), 0))
        .where(col(ImageRecord.file_path).is_not(None)).group_by(ImageRecord.user_id)).all()}
    return [AccountRow(user, workspace, *stats.get(user.id, (0, 0))) for user, workspace in rows]


def _workspace(session: Session, workspace_id: str) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound(f"no workspace '{workspace_id}'")
    return workspace


def _save(session: Session, row):
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def set_suspended(session: Session, workspace_id: str, suspended: bool) -> Workspace:
    """A suspended workspace's API keys and studio generations are refused (403) until lifted."""
    workspace = _workspace(session, workspace_id)
    workspace.suspended = bool(suspended)
    return _save(session, workspace)


def set_plan(session: Session, workspace_id: str, plan_slug: str | None) -> Workspace:
    workspace = _workspace(session, workspace_id)
    if plan_slug is not None and session.get(Plan, plan_slug) is None:
        raise NotFound(f"no plan '{plan_slug}'")
    workspace.plan_slug = plan_slug
    return _save(session, workspace)


def set_credits(session: Session, workspace_id: str, credits: int) -> Workspace:
    if isinstance(credits, bool) or not isinstance(credits, int) or not 0 <= credits <= MAX_NUMBER:
        raise InvalidRequest(f"credits must be a whole number from 0 to {MAX_NUMBER:,}", field="credits")
    workspace = _workspace(session, workspace_id)
    workspace.credits = credits
    return _save(session, workspace)


def set_user_active(session: Session, user_id: str, active: bool) -> User:
    """A disabled user can't sign in and their API keys stop working; the last admin can't be disabled."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user '{user_id}'")
    if not active and user.is_admin and _other_active_admins(session, user.id) == 0:
        raise Conflict("the last active administrator can't be disabled")
    user.is_active = bool(active)
    if not active:  # its sessions end now, not when their tokens expire
        user.token_version += 1
    return _save(session, user)


def reset_password(session: Session, user_ref: str, password: str) -> User:
    """An administrator (or the command line) sets a user's password, by id or email; every session of the user
    ends. The user's API keys keep working."""
    password_hash = hash_password(password)  # refuses a too-short password before anything else
    user = session.get(User, user_ref) or session.exec(select(User).where(
        User.email == normalize_email(user_ref))).first()
    if user is None:
        raise NotFound(f"no user '{user_ref}'")
    user.password_hash = password_hash
    user.token_version += 1
    return _save(session, user)


def _other_active_admins(session: Session, user_id: str) -> int:
    return session.exec(select(func.count()).select_from(User).where(
        User.is_admin, User.is_active, User.id != user_id)).one()


# -- plans ---------------------------------------------------------------------------------------

def list_plans(session: Session) -> list[Plan]:
    return list(session.exec(select(Plan).order_by(Plan.price_usd_month, Plan.slug)).all())


def plan_workspaces(session: Session) -> dict[str, int]:
    """How many workspaces are on each plan."""
    return dict(session.exec(select(Workspace.plan_slug, func.count()).group_by(Workspace.plan_slug)).all())


def save_plan(session: Session, values: dict) -> Plan:
    """Create or update a plan from a dict of Plan fields (``slug`` and ``name`` required)."""
    slug = str(values.get("slug") or "").strip().lower()
    if not _PLAN_SLUG.match(slug):
        raise InvalidRequest("plan slug: lowercase letters, digits, '-' and '_' (40 at most)", field="slug")
    name = str(values.get("name") or "").strip()
    if not name or len(name) > 100:
        raise InvalidRequest("plan name is required (100 characters at most)", field="name")
    plan = session.get(Plan, slug) or Plan(slug=slug, name=name)
    plan.name = name
    for field in _PLAN_NUMBERS:
        if field in values:
            value = values[field]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMBER:
                raise InvalidRequest(f"{field} must be a whole number from 0 to {MAX_NUMBER:,}", field=field)
            setattr(plan, field, value)
    if "storage_enabled" in values:
        plan.storage_enabled = bool(values["storage_enabled"])
    if "price_usd_month" in values:
        price = values["price_usd_month"]
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price <= 1e9:
            raise InvalidRequest("price_usd_month must be 0 or more", field="price_usd_month")
        plan.price_usd_month = float(price)
    if plan.max_concurrent_jobs < 1 or plan.max_batch_size < 1:
        raise InvalidRequest("a plan allows at least one concurrent job and a batch of one", field="max_batch_size")
    return _save(session, plan)


def delete_plan(session: Session, slug: str) -> None:
    plan = session.get(Plan, slug)
    if plan is None:
        raise NotFound(f"no plan '{slug}'")
    in_use = plan_workspaces(session).get(slug, 0)
    if in_use:
        raise Conflict(f"{in_use} workspace(s) are on the '{slug}' plan; move them to another plan first")
    session.delete(plan)
    session.commit()


class Administration:
    """The admin operations above, each in its own session (callers never open one)."""

    def __init__(self, db):
        self._db = db

    def list_accounts(self, query: str | None = None) -> list[AccountRow]:
        with read_scope(self._db) as session:
            return list_accounts(session, query)

    def list_plans(self) -> list[Plan]:
        with read_scope(self._db) as session:
            return list_plans(session)

    def plan_workspaces(self) -> dict[str, int]:
        with read_scope(self._db) as session:
            return plan_workspaces(session)

    def create_account(self, email: str, password: str, *, name: str = "", is_admin: bool = False,
                       plan_slug: str | None = None) -> User:
        with session_scope(self._db) as session:
            return create_account(session, email, password, name=name, is_admin=is_admin, plan_slug=plan_slug)

    def set_suspended(self, workspace_id: str, suspended: bool) -> Workspace:
        with session_scope(self._db) as session:
            return set_suspended(session, workspace_id, suspended)

    def set_plan(self, workspace_id: str, plan_slug: str | None) -> Workspace:
        with session_scope(self._db) as session:
            return set_plan(session, workspace_id, plan_slug)

    def set_credits(self, workspace_id: str, credits: int) -> Workspace:
        with session_scope(self._db) as session:
            return set_credits(session, workspace_id, credits)

    def set_user_active(self, user_id: str, active: bool) -> User:
        with session_scope(self._db) as session:
            return set_user_active(session, user_id, active)

    def reset_password(self, user_ref: str, password: str) -> User:
        with session_scope(self._db) as session:
            return reset_password(session, user_ref, password)

    def save_plan(self, values: dict) -> Plan:
        with session_scope(self._db) as session:
            return save_plan(session, values)

    def delete_plan(self, slug: str) -> None:
        with session_scope(self._db) as session:
            delete_plan(session, slug)

    def stored_images(self) -> tuple[int, int]:
        """How many images are stored on this box, and their bytes."""
        with read_scope(self._db) as session:
            count, stored = session.exec(select(func.count(), func.coalesce(func.sum(ImageRecord.bytes), 0))
                                         .where(col(ImageRecord.file_path).is_not(None))).one()
        return int(count), int(stored)
