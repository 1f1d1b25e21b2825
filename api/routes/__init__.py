"""One router per resource, gathered under ``/api/v1``."""

from fastapi import APIRouter

from api.routes import generate, health, models

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(generate.router)
api_router.include_router(models.router)
api_router.include_router(health.router)
