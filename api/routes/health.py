import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from api.deps import EngineDep
from api.errors import current_request_id
from api.schemas import Envelope, HealthData
from engine import __version__

router = APIRouter(tags=["health"])


class HealthEnvelope(Envelope[HealthData]):
    status: str = Field(description="`healthy` or `degraded` again beside `data`, as the ImageAPI document reads it")


@router.get("/health", response_model=HealthEnvelope,
            responses={503: {"model": HealthEnvelope, "description": "A component is failing"}})
def health(engine: EngineDep):
    """`healthy` (200) when database, storage, device and worker all work, else `degraded` (503)."""
    report = engine.health()
    data = HealthData(status=report["status"], version=__version__,
                      uptime_s=int(time.time() - engine.started_at), checks=report["checks"])
    body = HealthEnvelope(success=report["status"] == "healthy", data=data, status=report["status"],
                          request_id=current_request_id())
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.success else 503)
