"""One router per resource, gathered under ``/api/v1``."""

from fastapi import APIRouter

from api.responses import error_responses
from api.routes import auth, generate, health, image_studio, images, jobs, logs, models, prompt, usage, webhooks

# Any route can fail validation, hit an internal error or find the database busy; the rest is per route.
api_router = APIRouter(prefix="/api/v1", responses=error_responses(422, 500, 503))
for module in (generate, image_studio, prompt, models, health, usage, images, jobs, logs, auth, webhooks):
    api_router.include_router(module.router)
