"""GET /logs: the caller's recent API requests."""

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from api.deps import CurrentUser, SessionDep
from api.responses import ok
from engine.models import ApiLog

router = APIRouter(prefix="/logs", tags=["logs"])


@router.get("")
def list_logs(user: CurrentUser, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50):
    """Time, key prefix, endpoint, status, duration, request id and credits of your latest requests."""
    rows = session.exec(select(ApiLog).where(ApiLog.user_id == user.id)
                        .order_by(col(ApiLog.id).desc()).limit(limit)).all()
    return ok({"logs": [r.model_dump(exclude={"user_id", "workspace_id"}) for r in rows]})
