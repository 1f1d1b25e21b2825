"""One router per resource, gathered under ``/api/v1``."""

from fastapi import APIRouter

from api.routes import auth, generate, health, images, jobs, logs, models, usage

api_router = APIRouter(prefix="/api/v1")
for module in (generate, models, health, usage, images, jobs, logs, auth):
    api_router.include_router(module.router)
