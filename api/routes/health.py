import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import EngineDep
from api.errors import current_request_id
from api.schemas import Envelope, HealthData
from engine import __version__

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Envelope[HealthData],
            responses={503: {"model": Envelope[HealthData], "description": "A component is failing"}})
def health(engine: EngineDep):
    """`healthy` (200) when database, storage, device and worker all work, else `degraded` (503)."""
    report = engine.health()
    data = HealthData(status=report["status"], version=__version__,
                      uptime_s=int(time.time() - engine.started_at), checks=report["checks"])
    body = Envelope[HealthData](success=report["status"] == "healthy", data=data, request_id=current_request_id())
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.success else 503)
