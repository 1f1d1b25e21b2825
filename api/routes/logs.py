"""GET /logs: the caller's recent API requests."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentUser, EngineDep
from api.responses import error_responses, ok
from api.schemas import Envelope

router = APIRouter(prefix="/logs", tags=["logs"])


class LogEntry(BaseModel):
    id: int
    created_at: datetime
    key_prefix: str | None
    method: str
    endpoint: str
    status: int
    duration_ms: int
    request_id: str
    credits: int


class LogList(BaseModel):
    logs: list[LogEntry]


@router.get("", response_model=Envelope[LogList], responses=error_responses(401))
def list_logs(user: CurrentUser, engine: EngineDep, limit: Annotated[int, Query(ge=1, le=500)] = 50):
    """Time, key prefix, endpoint, status, duration, request id and credits of your latest requests."""
    rows = engine.request_log.recent(user.id, limit)
    return ok({"logs": [r.model_dump(exclude={"user_id", "workspace_id"}) for r in rows]})
