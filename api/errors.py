"""One error envelope for every response, one status code per domain error, a request id on everything."""

from __future__ import annotations

import json
import logging
import re
import secrets
from contextvars import ContextVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import errors as engine_errors
from engine.storage.files import StorageError

log = logging.getLogger(__name__)

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

# The one place where a domain error becomes an HTTP status.
STATUS_BY_ERROR: dict[type[engine_errors.EngineError], int] = {
    engine_errors.InvalidRequest: 400,
    engine_errors.ModelNotFound: 400,
    engine_errors.Unauthenticated: 401,
    engine_errors.InsufficientCredits: 402,
    engine_errors.Forbidden: 403,
    engine_errors.NotFound: 404,
    engine_errors.JobCancelled: 409,
    engine_errors.Conflict: 409,
    engine_errors.PayloadTooLarge: 413,
    engine_errors.UnsupportedMedia: 415,
    engine_errors.RateLimited: 429,
    engine_errors.GenerationFailed: 500,
    engine_errors.ModelUnavailable: 503,
    engine_errors.ProviderTimeout: 504,
    engine_errors.QueueFull: 503,
    engine_errors.DatabaseBusy: 503,
    StorageError: 507,
    engine_errors.StorageFull: 507,
}


def status_for(exc: engine_errors.EngineError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def current_request_id() -> str:
    return request_id_var.get()


def error_body(code: str, message: str, *, top: dict | None = None, **extra) -> dict:
    """The error envelope; ``extra`` goes into ``error``, ``top`` beside it (where the seed API puts a field)."""
    error = {"code": code, "message": message}
    error.update({k: v for k, v in extra.items() if v is not None})
    return {"success": False, "error": error, **(top or {}), "request_id": current_request_id()}


def error_response(status: int, code: str, message: str, headers: dict | None = None, *, top: dict | None = None,
                   **extra) -> JSONResponse:
    return JSONResponse(error_body(code, message, top=top, **extra), status_code=status, headers=headers)


# -- dialects: the OpenAI Images API (/v1/*) answers errors in OpenAI's shape -----------------------------
OPENAI_PREFIX = "/v1/"
OPENAI_TYPES = {402: "insufficient_quota", 429: "requests", 500: "server_error", 503: "server_error",
                507: "server_error"}  # every other status: invalid_request_error
OPENAI_CODES = {"unauthorized": "invalid_api_key", "insufficient_credits": "insufficient_quota",
                "rate_limited": "rate_limit_exceeded", "validation_error": "invalid_value",
                "invalid_request": "invalid_value"}


def is_openai(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PREFIX)


def openai_error(status: int, code: str, message: str, param: str | None = None,
                 headers: dict | None = None) -> JSONResponse:
    """``{"error": {"message", "type", "param", "code"}}``, as the OpenAI API answers (our request id in the
    ``X-Request-ID`` header, as everywhere)."""
    body = {"error": {"message": message, "type": OPENAI_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": OPENAI_CODES.get(code, code)}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- dialects: the AUTOMATIC1111 web UI API (/sdapi/v1/*) answers errors in A1111's shape ------------------
A1111_PREFIX = "/sdapi/"
# A1111's own words for a 401 (its --api-auth check, and FastAPI's HTTPBasic without credentials).
A1111_BAD_CREDENTIALS = "Incorrect username or password"
A1111_NO_CREDENTIALS = "Not authenticated"
A1111_CHALLENGE = 'Basic realm="Image Studio", charset="UTF-8"'


def is_a1111(request: Request) -> bool:
    return request.url.path.startswith(A1111_PREFIX)


def a1111_error(request: Request, status: int, code: str, message: str, *, field: str | None = None,
                headers: dict | None = None, details: list | None = None, **extra) -> JSONResponse:
    """``{"error", "detail", "body", "errors"}`` as A1111's API middleware answers an exception (``error`` its
    type, ``detail`` the message), with our ``code``, ``field`` and ``request_id`` beside. A 401 says A1111's
    words in ``detail`` (clients match them) and ours in ``errors``."""
    detail = message
    if status == 401:
        detail = A1111_BAD_CREDENTIALS if request.headers.get("authorization") else A1111_NO_CREDENTIALS
    body = {"error": "".join(part.capitalize() for part in code.split("_")), "detail": detail, "body": "",
            "errors": details if details is not None else message, "code": code}
    body.update({k: v for k, v in {"field": field, **extra}.items() if v is not None})
    body["request_id"] = current_request_id()
    return JSONResponse(body, status_code=status, headers=headers)


def dialect_error(request: Request, status: int, code: str, message: str, *, field: str | None = None,
                  headers: dict | None = None, top: dict | None = None, **extra) -> JSONResponse:
    """One error, in the shape of the API the request came to."""
    if is_openai(request):
        return openai_error(status, code, message, param=field, headers=headers)
    if is_a1111(request):
        return a1111_error(request, status, code, message, field=field, headers=headers, **extra)
    return error_response(status, code, message, headers=headers, top=top, field=field, **extra)


def error_for(exc: engine_errors.EngineError) -> dict:
    """The ``error`` object of an engine error, as used inside batch results."""
    return error_body(exc.code, exc.message, field=exc.field, **_rate_limit_details(exc))["error"]


def _rate_limit_details(exc: engine_errors.EngineError) -> dict:
    if isinstance(exc, engine_errors.RateLimited):
        return {"retry_after": exc.retry_after, "limit": exc.limit}
    return {}


def _field_name(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_details(errors: list[dict]) -> list[dict]:
    return [{"field": _field_name(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid value"),
             "type": e.get("type")} for e in errors]


async def _engine_error(request: Request, exc: engine_errors.EngineError) -> JSONResponse:
    status = status_for(exc)
    headers, extra = {}, {}
    if status == 401:  # A1111 clients authenticate with Basic (its --api-auth); everything else with Bearer
        headers["WWW-Authenticate"] = A1111_CHALLENGE if is_a1111(request) else "Bearer"
    if isinstance(exc, engine_errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
        headers.update(exc.headers)
    if isinstance(exc, engine_errors.DatabaseBusy):
        headers["Retry-After"] = "1"  # locks are held for milliseconds: worth retrying at once
    if status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    extra = _rate_limit_details(exc)
    # The seed API: a 429 "includes retry_after seconds": at the top of the body, and in the error object.
    top = {"retry_after": extra["retry_after"]} if extra else None
    return dialect_error(request, status, exc.code, exc.message, headers=headers or None, top=top,
                         field=exc.field, **extra)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return dialect_error(request, 400, "invalid_json", "the request body is not valid JSON")
    details = validation_details(errors)
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    # OpenAI answers an invalid argument with 400; /api/v1 with 422.
    return dialect_error(request, 400 if is_openai(request) else 422, "validation_error",
                         f"{first['field']}: {first['message']}", field=first["field"], details=details)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
               429: "rate_limited"}


# FastAPI's words for a body it could not decode (e.g. not UTF-8): the same error as malformed JSON.
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        return dialect_error(request, 400, "invalid_json", "the request body is not valid JSON")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return dialect_error(request, exc.status_code, code, message, headers=getattr(exc, "headers", None))


class ClientGone(Exception):
    """The caller of a synchronous request hung up before its answer was ready (its work was cancelled)."""


CLIENT_CLOSED_REQUEST = 499  # nginx's status for it: nobody reads the answer, the API log records it


async def _client_gone(request: Request, _exc: ClientGone) -> JSONResponse:
    return dialect_error(request, CLIENT_CLOSED_REQUEST, "client_closed_request",
                          "the client closed the connection; its work was cancelled and not charged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(engine_errors.EngineError, _engine_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def request_id_for(scope) -> str:
    """A sane incoming X-Request-ID (kept for end-to-end tracing), else a new id."""
    incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
    return incoming if _SAFE_ID.match(incoming) else f"req_{secrets.token_hex(12)}"


class RequestContextMiddleware:
    """Pure ASGI: assigns a request id (or keeps a sane incoming X-Request-ID), adds it to every
    response, refuses bodies over the size limit with 413, and turns an unhandled error into a
    500 envelope that still carries the request id."""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = request_id_for(scope)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        # Set when the body goes over the limit. The app may catch the error it gets from ``receive`` (FastAPI
        # turns it into a 400 "error parsing the body"), so from then on its answer is dropped for the 413.
        cut_off = False

        async def send_raw(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = list(message.get("headers", [])) + [(b"x-request-id", request_id.encode())]
            await send(message)

        async def send_with_id(message):
            if not cut_off:
                await send_raw(message)

        async def send_json(status: int, body: dict, headers: list | None = None):
            payload = json.dumps(body).encode()
            await send_raw({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                *(headers or [])]})
            await send_raw({"type": "http.response.body", "body": payload})

        async def too_large():
            if not started:
                await send_json(413, error_body("payload_too_large",
                                                f"request body exceeds {self.max_body_bytes} bytes"))

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                return await too_large()
            received = 0

            async def limited_receive():
                nonlocal received, cut_off
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        cut_off = True
                        raise _BodyTooLarge()
                return message

            await self.app(scope, limited_receive, send_with_id)
            if cut_off:
                await too_large()
        except _BodyTooLarge:
            await too_large()
        except Exception:
            if cut_off:
                return await too_large()
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_json(500, error_body("internal_error", "an internal error occurred"))
        finally:
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    pass
