"""One router per resource, gathered under ``/api/v1``."""

from fastapi import APIRouter

from api.routes import auth, generate, health, image_studio, images, jobs, logs, models, prompt, usage

api_router = APIRouter(prefix="/api/v1")
for module in (generate, image_studio, prompt, models, health, usage, images, jobs, logs, auth):
    api_router.include_router(module.router)
