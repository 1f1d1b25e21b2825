"""Browser sessions: email + password → a short-lived JWT, accepted wherever API keys are."""

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentUser, EngineDep
from api.responses import error_responses, ok
from api.schemas import Envelope
from engine.accounts.users import create_access_token

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class SessionUser(BaseModel):
    id: str
    email: str
    is_admin: bool


class LoginData(BaseModel):
    access_token: str
    token_type: str
    expires_in: int = Field(description="Seconds until the token expires")
    user: SessionUser


class MeData(SessionUser):
    name: str
    workspace_id: str


@router.post("/login", response_model=Envelope[LoginData], responses=error_responses(400, 401, 413, 429))
def login(body: LoginRequest, request: Request, engine: EngineDep):
    """Returns `access_token` (send as `Authorization: Bearer …`), `token_type` and `expires_in` seconds."""
    user = engine.sign_in(body.email, body.password, request.client.host if request.client else "?")
    ttl = engine.settings.jwt_ttl_minutes
    token = create_access_token(user, engine.keys.session_tokens, ttl)
    return ok({"access_token": token, "token_type": "bearer", "expires_in": ttl * 60,
               "user": {"id": user.id, "email": user.email, "is_admin": user.is_admin}})


@router.get("/me", response_model=Envelope[MeData], responses=error_responses(401))
def me(user: CurrentUser):
    return ok({"id": user.id, "email": user.email, "name": user.name, "is_admin": user.is_admin,
               "workspace_id": user.workspace_id})


class RevokedData(BaseModel):
    revoked: bool = Field(description="Every session token of this user stopped working (API keys are unaffected)")


@router.post("/logout", response_model=Envelope[RevokedData], responses=error_responses(401))
def logout(user: CurrentUser, engine: EngineDep):
    """Sign out everywhere: every session token (and studio session) of the caller stops working at once."""
    engine.accounts.revoke_sessions(user.id)
    return ok({"revoked": True})
