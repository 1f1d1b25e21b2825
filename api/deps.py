"""Shared route dependencies: the engine, the calling user and account (routes never open database sessions)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.data.tables import Plan, User, Workspace
from engine.errors import Forbidden, Unauthenticated
from engine.service import ImageEngine


def get_engine(request: Request) -> ImageEngine:
    return request.app.state.engine


EngineDep = Annotated[ImageEngine, Depends(get_engine)]


bearer_scheme = HTTPBearer(auto_error=False, description="An API key (`sk_live_…`) or a session token from "
                                                         "`POST /api/v1/auth/login`")


def presented_token(request: Request) -> str | None:
    """The API key or session token of the request: ``Bearer <token>``, or HTTP Basic with the key as the password
    (``Basic base64(anything:sk_live_…)``, as A1111's ``--api-auth`` clients send it; the username is ignored).

    A browser replays Basic credentials it once prompted for to any page's requests, like a cookie; so, as for
    the studio's session cookie, they are not taken from a request a browser sends from another site (such a
    page sends the key as a Bearer token, which it must hold itself)."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if not scheme:
        return None
    if scheme == "bearer":
        return value or None
    if scheme != "basic":
        raise Unauthenticated(f"unsupported Authorization scheme '{scheme[:20]}': send 'Authorization: Bearer "
                              f"sk_live_…' (or Basic auth with the API key as the password)")
    if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        raise Unauthenticated("Basic credentials are not accepted from a page on another site; send the API key "
                              "as 'Authorization: Bearer sk_live_…'")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthenticated("malformed Basic credentials: send base64(username:API key)") from exc
    _username, colon, password = decoded.partition(":")
    if not colon or not password:
        raise Unauthenticated("Basic credentials need the API key as the password (username:sk_live_…)")
    return password


def get_current_user(
    request: Request,
    engine: EngineDep,
    # Declares the Bearer scheme in the OpenAPI document; the header itself is read by presented_token.
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> User:
    token = presented_token(request)
    if token is None:
        raise Unauthenticated("missing API key: send the header 'Authorization: Bearer sk_live_…'")
    user, request.state.api_key_prefix = engine.authenticate(token)
    request.state.user_id, request.state.workspace_id = user.id, user.workspace_id
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


@dataclass
class Account:
    user: User
    workspace: Workspace
    plan: Plan


def get_account(
    request: Request,
    engine: EngineDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Account:
    """The caller, their workspace and plan; 403 when the account is suspended or has no plan. One dependency
    (one trip to a worker thread) for both lookups: each extra hop between the event loop and the thread
    pool costs a cheap endpoint a noticeable share of its requests/s on a small box."""
    user = get_current_user(request, engine, credentials)
    workspace, plan = engine.meter.plan_of(user.workspace_id)
    return Account(user=user, workspace=workspace, plan=plan)


AccountDep = Annotated[Account, Depends(get_account)]


def require_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("administrators only")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
