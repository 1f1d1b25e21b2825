"""CORS for the public API and the API request log (pure ASGI middleware)."""

from __future__ import annotations

import logging
import time

from api.errors import request_id_for
from engine.data.tables import ApiLog

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
# Every API this server speaks: its own, the OpenAI Images dialect (/v1/*) and the AUTOMATIC1111 one (/sdapi/*).
API_PREFIXES = (API_PREFIX, "/v1/", "/sdapi/")
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, Prefer, X-Request-ID"
EXPOSE_HEADERS = ("X-Request-ID, Retry-After, RateLimit, RateLimit-Policy, RateLimit-Limit, RateLimit-Remaining, "
                  "RateLimit-Reset, Location, Idempotent-Replayed")
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"


class PublicApiCors:
    """Browsers on other sites may call /api/* with a Bearer key: by default from any origin, in strict
    mode only from the configured ones. Credentials (cookies) are never allowed cross-origin, so another
    site can never act with a studio session; non-API paths get no CORS headers at all."""

    def __init__(self, app, runtime):
        self.app = app
        self.runtime = runtime

    def _allowed_origin(self, origin: str) -> str | None:
        if not self.runtime.get("cors_strict"):
            return "*"
        return origin if origin in self.runtime.get("cors_origins") else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIXES):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin:
            return await self.app(scope, receive, send)
        allowed = self._allowed_origin(origin)
        cors = [(b"vary", b"Origin")]
        if allowed:
            cors.append((b"access-control-allow-origin", allowed.encode()))
            cors.append((b"access-control-expose-headers", EXPOSE_HEADERS.encode()))
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            status = 204 if allowed else 403
            if allowed:
                cors += [(b"access-control-allow-methods", ALLOW_METHODS.encode()),
                         (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                         (b"access-control-max-age", b"600")]
            # Answered here, before RequestContextMiddleware: it needs its request id too.
            request_id = request_id_for(scope).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [*cors, (b"x-request-id", request_id)]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                message["headers"] = [h for h in message.get("headers", [])
                                      if not h[0].lower().startswith(b"access-control-")] + cors
            await send(message)

        await self.app(scope, receive, send_with_cors)


class ApiLogMiddleware:
    """Records every /api request (time, key prefix, endpoint, status, duration, request id, credits)."""

    def __init__(self, app, request_log):
        self.app = app
        self.request_log = request_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIXES) or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = scope.get("state", {})
            entry = ApiLog(user_id=state.get("user_id"), workspace_id=state.get("workspace_id"),
                           key_prefix=state.get("api_key_prefix"), method=scope["method"],
                           endpoint=scope["path"][:200], status=status,
                           duration_ms=int((time.perf_counter() - started) * 1000),
                           request_id=state.get("request_id", ""), credits=state.get("credits", 0))
            self.request_log.write(entry)  # queued, never blocks: rows are written in batches


class HeadAsGet:
    """HEAD on /api/* mirrors GET: the same status and headers, no body (FastAPI routes take GET only)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD" or not scope["path"].startswith(API_PREFIXES):
            return await self.app(scope, receive, send)

        async def send_headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
