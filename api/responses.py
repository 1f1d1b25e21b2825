"""Building responses: the success envelope, image payloads, metering and idempotent replays."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
from collections.abc import Awaitable, Callable

import orjson
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from PIL import Image

from api.errors import ClientGone, current_request_id
from api.schemas import ErrorEnvelope
from engine.billing.metering import Admission
from engine.data.tables import User
from engine.errors import Conflict, EngineError, InvalidRequest, JobCancelled
from engine.generation.jobs import GenerationResult
from engine.generation.png import data_url
from engine.generation.resumable import AsyncJob
from engine.service import ImageEngine
from engine.storage.gallery import signed_image_path, signed_query

ERROR_DESCRIPTIONS = {
    400: "Invalid JSON, or a value the server refuses (see `error.field`)",
    401: "Missing, invalid, expired or revoked API key or session token",
    402: "Not enough credits for this request",
    403: "The account is suspended or has no plan",
    404: "Not found (another user's objects are indistinguishable from missing ones)",
    409: "The Idempotency-Key was used for another request, or that request is still running",
    413: "The request body or an input image is too large",
    415: "The input image's format is not supported (PNG, JPEG and WEBP are)",
    422: "A field has the wrong type or is out of range",
    429: "A rate, quota or concurrency limit was reached: retry after `Retry-After` seconds",
    500: "An internal error, or the generation failed",
    503: "The model is unavailable, the queue is full, or the database is busy: retry shortly",
    507: "The image could not be written to storage",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for error statuses: each is the error envelope."""
    return {status: {"model": ErrorEnvelope, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: a 1 MB base64 image takes 0.1 ms instead of the standard library's 3 ms."""

    def render(self, content) -> bytes:
        return orjson.dumps(content)


def ok(data, status: int = 200, headers: dict | None = None, top: dict | None = None) -> JSONResponse:
    """The success envelope; ``top`` adds fields beside ``data`` (where a seed API document puts them)."""
    body = {"success": True, "data": jsonable_encoder(data), **(top or {}), "request_id": current_request_id()}
    return FastJSONResponse(body, status_code=status, headers=headers)


IMAGE_FORMATS = ("png", "jpeg", "webp")


def encoded_as(png: bytes, fmt: str) -> bytes:
    """The PNG as ``fmt`` (JPEG and WebP at quality 90; transparency flattened for JPEG)."""
    if fmt == "png":
        return png
    image = Image.open(io.BytesIO(png))
    image = image.convert("RGB") if fmt == "jpeg" else image
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.upper(), quality=90)
    return buffer.getvalue()


def image_response(png: bytes, fmt: str = "png", headers: dict | None = None) -> Response:
    if fmt not in IMAGE_FORMATS:
        raise InvalidRequest("format must be png, jpeg or webp", field="format")
    return Response(encoded_as(png, fmt), media_type=f"image/{fmt}", headers=headers)


def base_url(request: Request, engine: ImageEngine) -> str:
    return (engine.settings.public_url or str(request.base_url)).rstrip("/")


def hosted_image_url(request: Request, engine: ImageEngine, image_id: str, file_path: str | None = None) -> str:
    """A stored image's link, signed so that it works without a key until it expires."""
    return hosted_link(base_url(request, engine), engine, image_id, file_path)


def hosted_link(base: str, engine: ImageEngine, image_id: str, file_path: str | None = None) -> str:
    """Our signed link to a stored image, or the presigned URL of its object where the admin chose those (and
    the image's place is known)."""
    presigned = engine.presigned_image_url(file_path) if file_path else None
    return presigned or base + signed_image_path(image_id, engine.keys.image_links)


def image_payload(result: GenerationResult, request: Request, engine: ImageEngine, storage: dict,
                  **extra) -> dict:
    """The image part of a response: a hosted, signed URL when stored, else a data URL."""
    image = url = (hosted_image_url(request, engine, result.image_id, result.file_path) if result.stored
                   else data_url(result.png))
    return {
        "id": result.image_id, "job_id": result.job_id, "image": image, "image_url": url, "format": "png",
        **generation_info(result.params.as_dict()), "duration_ms": result.duration_ms,
        "storage": {"enabled": storage["enabled"], "stored": result.stored, "plan": storage["plan"],
                    "plan_slug": storage["plan_slug"],
                    **({"reason": "storage quota is full"} if storage.get("quota_full") else {})},
        "warnings": list(result.params.warnings),
        **extra,
    }


def generation_info(params: dict) -> dict:
    """Recorded generation parameters (``ResolvedParams.as_dict``) as responses show them: the step count
    under the seed API's ``num_inference_steps`` and, as before, ``steps``."""
    return {"requested_model": None, "true_cfg_scale": None, **params, "num_inference_steps": params["steps"]}


async def metered(request: Request, engine: ImageEngine, workspace_id: str, *, requests: int = 1, credits: int = 0,
                  costs: list[int] | None = None,
                  work: Callable[[Admission], Awaitable[JSONResponse]]) -> JSONResponse:
    """Admit (limits, concurrency, credits), run ``work``, then give back whatever did not succeed.

    With ``costs`` (a batch: the credits of each item), as many items as fit are admitted and
    ``admission.refusals`` holds the reason for each of the others. ``work`` marks what succeeded on
    the admission; it may set ``admission.deferred`` when the work goes on after the response (async
    jobs), and then settles it itself.
    """
    if costs is None:
        admission = await asyncio.to_thread(engine.meter.admit, workspace_id, requests=requests, credits=credits)
    else:
        admission = await asyncio.to_thread(engine.meter.admit_batch, workspace_id, costs)
    try:
        response = await work(admission)
    finally:
        if not admission.deferred:
            await asyncio.to_thread(engine.meter.settle, admission)
    request.state.credits = admission.credits_used if not admission.deferred else admission.credits
    response.headers.update(admission.headers())
    return response


_MAX_KEY = 255


async def idempotent(request: Request, engine: ImageEngine, user: User,
                     produce: Callable[[], Awaitable[JSONResponse]], fingerprint: str | None = None) -> JSONResponse:
    """With an ``Idempotency-Key`` header, a retried POST gets the first (2xx) response back
    instead of running, and being charged, again. ``fingerprint`` stands for the body where its bytes change
    between retries of one request (multipart boundaries)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return await produce()
    if not 1 <= len(key) <= _MAX_KEY or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be 1-{_MAX_KEY} printable characters", field="Idempotency-Key")
    body_hash = fingerprint or hashlib.sha256(await request.body()).hexdigest()
    endpoint = request.url.path
    store = engine.idempotency
    existing = await asyncio.to_thread(store.claim, user.id, key, endpoint, body_hash)
    if existing is not None:
        if existing.endpoint != endpoint or existing.body_hash != body_hash:
            raise Conflict("this Idempotency-Key was already used with a different request", field="Idempotency-Key")
        if existing.status is None:
            raise Conflict("a request with this Idempotency-Key is still running; retry shortly",
                           field="Idempotency-Key")
        return FastJSONResponse(existing.response, status_code=existing.status,
                                headers={"Idempotent-Replayed": "true"})
    try:
        response = await produce()
    except BaseException:
        await asyncio.to_thread(store.forget, user.id, key)
        raise
    if 200 <= response.status_code < 300:
        await asyncio.to_thread(store.complete, user.id, key, response.status_code, json.loads(response.body))
    else:
        await asyncio.to_thread(store.forget, user.id, key)
    return response


async def outbound(engine: ImageEngine, call: Callable, *args, **kwargs):
    """Run a blocking call that waits on another server (a URL fetch, a remote text model) in the engine's
    bounded outbound pool, so that slow hosts can't take the threads admission and the database need."""
    return await asyncio.get_running_loop().run_in_executor(engine.outbound, functools.partial(call, *args, **kwargs))


def wants_async(request: Request, run_async: bool) -> bool:
    return run_async or "respond-async" in request.headers.get("prefer", "").lower()


DISCONNECT_POLL_S = 0.25


async def wait_for_client(request: Request, engine: ImageEngine, tasks: list):
    """Wait for the tasks' futures while the caller is still connected. A caller who hangs up gets nothing,
    so its work is cancelled (queued: at once; running: at its next step) and, never delivered, refunded."""
    futures = [asyncio.wrap_future(task.future) for task in tasks]
    pending = set(futures)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=DISCONNECT_POLL_S)
        if pending and await request.is_disconnected():
            for task in tasks:
                await asyncio.to_thread(engine.cancel_job, task.id)
            raise ClientGone()
    return futures


def signed_result_path(job_id: str, engine: ImageEngine) -> str:
    """A link to an unstored image's short-lived copy, valid as long as the copy is kept."""
    query = signed_query(f"result:{job_id}", engine.keys.image_links, engine.settings.result_ttl_minutes * 60)
    return f"/v1/images/results/{job_id}?{query}"


async def webhook_target(request: Request, engine: ImageEngine, callback_url: str | None,
                         run_async: bool) -> tuple[str, str] | None:
    """(API key id, URL) a job's webhook goes to: the request's ``callback_url``, else its key's default; None
    for none. Checked before anything is admitted: async only, a key with a secret, an allowed address."""
    prefix = getattr(request.state, "api_key_prefix", None)
    by_key = prefix not in (None, "session")
    if callback_url is None:
        if not wants_async(request, run_async) or not by_key:
            return None
        key = await asyncio.to_thread(engine.webhooks.key_by_prefix, prefix)
        return (key.id, key.webhook_url) if key and key.webhook_url and key.webhook_secret else None
    if not wants_async(request, run_async):
        raise InvalidRequest("callback_url takes async requests (\"async\": true)", field="callback_url")
    if not by_key:
        raise InvalidRequest("webhooks belong to an API key: send this request with one", field="callback_url")
    key = await asyncio.to_thread(engine.webhooks.key_by_prefix, prefix)
    if key is None or not key.webhook_secret:
        raise InvalidRequest("this key has no webhook secret yet: create one with POST /api/v1/webhooks",
                             field="callback_url")
    await outbound(engine, engine.webhooks.check_url, callback_url)  # resolves the host: the outbound pool
    return key.id, callback_url


def job_event(future, task, engine: ImageEngine, base: str) -> tuple[str, dict]:
    """The webhook of a job that ended: its event type and the job as ``GET /jobs/{id}`` shows it."""
    data: dict = {"job_id": task.id, "status": "succeeded", "error": None, "result": None,
                  "status_url": f"{base}/api/v1/jobs/{task.id}"}
    error = future.exception()
    if error is not None:
        cancelled = isinstance(error, JobCancelled)
        data["status"] = "cancelled" if cancelled else "failed"
        data["error"] = error.message if isinstance(error, EngineError) else "the job failed"
        return ("job.cancelled" if cancelled else "job.failed"), data
    result = future.result()
    url = (hosted_link(base, engine, result.image_id, result.file_path) if result.stored
           else base + signed_result_path(result.job_id, engine))
    data["result"] = {"id": result.image_id, "job_id": result.job_id, "image_url": url, "stored": result.stored,
                      "format": "png", **generation_info(result.params.as_dict()), "duration_ms": result.duration_ms}
    return "job.succeeded", data


def async_job_of(request: Request, engine: ImageEngine, run_async: bool,
                 webhook: tuple[str, str] | None) -> AsyncJob | None:
    """What an async request's job keeps as data, to be run and announced by another process if this one dies;
    None for a request that waits for its image."""
    if not wants_async(request, run_async):
        return None
    return AsyncJob(webhook=webhook, base_url=base_url(request, engine))


def announce_resumed_job(engine: ImageEngine, task, future, request: dict) -> None:
    """The webhook of an async job that another process accepted and this one finished (engine.resumed_job_ended):
    the same event the accepting process would have sent."""
    if request.get("webhook"):
        key_id, url = request["webhook"]
        event, data = job_event(future, task, engine, request["base_url"])
        engine.webhooks.enqueue(key_id, task.owner, task.id, url, event, data)


async def respond_with_image(request: Request, engine: ImageEngine, admission: Admission, task, *, storage: dict,
                             cost: int, run_async: bool, image_url_on_top: bool = False,
                             webhook: tuple[str, str] | None = None, **extra) -> JSONResponse:
    """Answer 202 with the job at once (async mode; the charge is settled when the job ends), or wait for the
    image and answer with it (``image_url_on_top``: also beside ``data``, as the Image Studio document reads it)."""
    if wants_async(request, run_async):
        admission.deferred = True

        base = base_url(request, engine)
        user_id = request.state.user_id

        def settle(future) -> None:
            if not future.cancelled() and future.exception() is None:
                admission.succeeded(images=1, credits=cost)
            engine.meter.settle(admission)
            if webhook is not None:
                event, data = job_event(future, task, engine, base)
                engine.webhooks.enqueue(webhook[0], user_id, task.id, webhook[1], event, data)

        task.future.add_done_callback(settle)
        status_url = f"/api/v1/jobs/{task.id}"
        return ok({"job_id": task.id, "status": "queued", "status_url": status_url}, status=202,
                  headers={"Location": status_url})
    result = (await wait_for_client(request, engine, [task]))[0].result()
    admission.succeeded(images=1, credits=cost)
    payload = image_payload(result, request, engine, storage, credits_used=cost, **extra)
    return ok(payload, top={"image_url": payload["image_url"]} if image_url_on_top else None)
