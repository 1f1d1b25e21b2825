"""Shared route dependencies: the engine, a database session, the calling user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from engine.accounts import authenticate_key
from engine.db import session_scope
from engine.errors import Unauthenticated
from engine.models import User
from engine.service import ImageEngine


def get_engine(request: Request) -> ImageEngine:
    return request.app.state.engine


EngineDep = Annotated[ImageEngine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    with session_scope(engine.db) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

bearer_scheme = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer sk_live_…`")


def get_current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> User:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing API key: send the header 'Authorization: Bearer sk_live_…'")
    user, key = authenticate_key(session, credentials.credentials)
    request.state.api_key_prefix = key.prefix
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
