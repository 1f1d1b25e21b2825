"""The application factory: the v1 API and the studio on one FastAPI app."""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request

from api.dialects import automatic1111, openai_edits, openai_images
from api.errors import RequestContextMiddleware, dialect_error, install_error_handlers
from api.middleware import ApiLogMiddleware, HeadAsGet, PublicApiCors
from api.responses import announce_resumed_job, ok
from api.routes import api_router, downloads
from engine import __version__
from engine.config import Settings
from engine.service import ImageEngine

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, engine: ImageEngine | None = None,
               with_studio: bool | None = None) -> FastAPI:
    settings = settings or (engine.settings if engine else Settings())
    engine = engine or ImageEngine(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        engine.start()
        _hint_first_key(engine)
        yield
        engine.stop()

    app = FastAPI(
        title="Image Studio API", version=__version__, lifespan=lifespan,
        description="Self-hosted image generation. Authenticate with `Authorization: Bearer sk_live_…`.",
    )
    app.state.engine = engine
    engine.resumed_job_ended = partial(announce_resumed_job, engine)
    install_error_handlers(app)
    # Outermost last: CORS headers go on every API response, errors from the request context included.
    app.add_middleware(HeadAsGet)
    app.add_middleware(ApiLogMiddleware, request_log=engine.request_log)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(PublicApiCors, runtime=engine.runtime)
    app.include_router(api_router)
    app.include_router(openai_images.router)
    app.include_router(automatic1111.router)
    app.include_router(openai_edits.router)
    app.include_router(downloads.router)
    _add_api_fallback(app)
    if settings.studio_enabled if with_studio is None else with_studio:
        from studio import mount_studio

        mount_studio(app, engine)
    return app


def _add_api_fallback(app: FastAPI) -> None:
    """Unknown /api paths and methods answer with the JSON envelope, never the studio's HTML page: 404 for a
    path that isn't there, 405 with ``Allow`` for a method a path doesn't take, and the methods for OPTIONS."""

    def allowed_methods(path: str) -> list[str]:
        # The documented paths tell which methods a known path takes (405 rather than 404).
        methods: set[str] = set()
        for template, operations in app.openapi()["paths"].items():
            if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
                methods |= {m.upper() for m in operations}
        if "GET" in methods:
            methods.add("HEAD")  # answered by HeadAsGet
        return sorted(methods | {"OPTIONS"}) if methods else []

    async def api_not_found(request: Request, path: str):
        allowed = allowed_methods(request.url.path)
        if not allowed:
            return dialect_error(request, 404, "not_found", f"no API route at {request.url.path}")
        headers = {"Allow": ", ".join(allowed)}
        if request.method == "OPTIONS":  # not a CORS preflight (PublicApiCors answers those): say what it takes
            return ok({"path": request.url.path, "methods": allowed}, headers=headers)
        return dialect_error(request, 405, "method_not_allowed", f"{request.method} is not allowed here",
                             headers=headers)

    for prefix in ("/api", "/v1", "/sdapi"):
        app.add_api_route(f"{prefix}/{{path:path}}", api_not_found, include_in_schema=False,
                          methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])


def _hint_first_key(engine: ImageEngine) -> None:
    if not engine.accounts.has_api_keys():
        log.warning("No API keys yet. Create the first admin key with:  imagestudio keys create --admin")
