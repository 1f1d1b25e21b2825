"""Shared route dependencies: the engine, the calling user and account (routes never open database sessions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.errors import Forbidden, Unauthenticated
from engine.data.tables import Plan, User, Workspace
from engine.service import ImageEngine


def get_engine(request: Request) -> ImageEngine:
    return request.app.state.engine


EngineDep = Annotated[ImageEngine, Depends(get_engine)]


bearer_scheme = HTTPBearer(auto_error=False, description="An API key (`sk_live_…`) or a session token from "
                                                         "`POST /api/v1/auth/login`")


def get_current_user(
    request: Request,
    engine: EngineDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> User:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing API key: send the header 'Authorization: Bearer sk_live_…'")
    user, request.state.api_key_prefix = engine.authenticate(credentials.credentials)
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
