"""Who is signed in to the studio, and the guards every page and action goes through.

The browser holds only NiceGUI's session cookie; the signed-in user's id lives server-side in
``app.storage.user``. Every page load and every sensitive action re-reads the user from the
database, so a disabled account or a removed admin flag takes effect at once. That read runs off the
event loop (``off_loop``), so the guards are coroutines: ``await auth.require_user(...)``.
"""

from __future__ import annotations

from urllib.parse import quote

from nicegui import app, ui

from engine.data.tables import User
from engine.service import ImageEngine
from studio.offload import off_loop

SESSION_KEY = "user_id"
VERSION_KEY = "token_version"


async def signed_in_user(engine: ImageEngine) -> User | None:
    """The active user of this browser session, or None (a stale session is cleared)."""
    # app.storage.user belongs to this request's context: read here, on the loop; only the id goes to the thread.
    user_id = app.storage.user.get(SESSION_KEY)
    if not user_id:
        return None
    user = await off_loop(engine.accounts.active_user, user_id)
    # A session made before the user's sessions were revoked (sign out everywhere, a new password) is over.
    if user is not None and app.storage.user.get(VERSION_KEY, 0) != user.token_version:
        user = None
    if user is None:
        if app.storage.user.get(SESSION_KEY) == user_id:  # not if another tab signed in meanwhile
            sign_out()
        return None
    return user


def sign_in(user: User) -> None:
    sign_out()  # nothing of an earlier session carries over
    app.storage.user[SESSION_KEY] = user.id
    app.storage.user[VERSION_KEY] = user.token_version


def keep_session(user: User) -> None:
    """After this session's own user revoked their sessions (a new password): this one stays signed in."""
    if app.storage.user.get(SESSION_KEY) == user.id:
        app.storage.user[VERSION_KEY] = user.token_version


def sign_out() -> None:
    """Forget everything of this browser session except its light/dark choice."""
    dark = app.storage.user.get("dark")
    app.storage.user.clear()
    if dark is not None:
        app.storage.user["dark"] = dark


def safe_next(path: str | None) -> str:
    """Only same-site paths: ``next=//evil.example`` or an absolute URL would be an open redirect."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


async def require_user(engine: ImageEngine, path: str) -> User | None:
    """The signed-in user for a page at ``path``, or None after sending the browser to sign in.

    The redirect happens in the browser so the page itself answers 200 with nothing in it.
    """
    user = await signed_in_user(engine)
    if user is None:
        ui.navigate.to(f"/login?next={quote(path)}" if path != "/" else "/login")
    return user


async def require_admin(engine: ImageEngine, path: str) -> User | None:
    user = await require_user(engine, path)
    if user is not None and not user.is_admin:
        ui.navigate.to("/")
        return None
    return user


class Guard:
    """Re-checks, at each action, that the page's user is still the signed-in, active (admin) user."""

    def __init__(self, engine: ImageEngine, user: User, *, admin: bool = False):
        self.engine = engine
        self.user_id = user.id
        self.admin = admin

    async def user(self) -> User | None:
        user = await signed_in_user(self.engine)
        if user is None or user.id != self.user_id:
            ui.notify("You have been signed out. Sign in again.", type="warning")
            ui.navigate.to("/login")
            return None
        if self.admin and not user.is_admin:
            ui.notify("Administrators only.", type="negative")
            ui.navigate.to("/")
            return None
        return user
