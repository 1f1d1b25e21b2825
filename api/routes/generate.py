"""POST /generate (single, batch, async) and its product and logo variants."""

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import Account, AccountDep, EngineDep
from api.errors import error_for, validation_details
from api.responses import (
    async_job_of,
    error_responses,
    idempotent,
    image_payload,
    metered,
    ok,
    respond_with_image,
    wait_for_client,
    wants_async,
    webhook_target,
)
from api.schemas import BatchData, Envelope, GenerateRequest, ImageData, JobAccepted
from engine.billing.metering import Admission
from engine.errors import EngineError, InvalidRequest
from engine.generation.params import GenerationParams, ResolvedParams
from engine.generation.variants import VARIANTS, Variant, apply_variant
from engine.service import ImageEngine

log = logging.getLogger(__name__)

router = APIRouter(prefix="/generate", tags=["generate"])

ERROR_STATUSES = (400, 401, 402, 403, 409, 413, 422, 429, 500, 503, 507)
RESPONSES = {202: {"model": Envelope[JobAccepted], "description": "Accepted (async mode): poll the job"},
             **error_responses(*ERROR_STATUSES)}


@router.post("", response_model=Envelope[ImageData] | Envelope[BatchData], responses=RESPONSES)
async def generate(request: Request, body: GenerateRequest, account: AccountDep, engine: EngineDep):
    """Generate one image, or a batch with `items` (each item succeeds or fails on its own)."""
    return await _generate(request, body, account, engine, None)


@router.post("/product", response_model=Envelope[ImageData] | Envelope[BatchData], responses=RESPONSES)
async def generate_product(request: Request, body: GenerateRequest, account: AccountDep, engine: EngineDep):
    """Like generate, with a product-photography prompt template and negative prompt."""
    return await _generate(request, body, account, engine, VARIANTS["product"])


@router.post("/logo", response_model=Envelope[ImageData] | Envelope[BatchData], responses=RESPONSES)
async def generate_logo(request: Request, body: GenerateRequest, account: AccountDep, engine: EngineDep):
    """Like generate, with a flat vector-logo prompt template and negative prompt."""
    return await _generate(request, body, account, engine, VARIANTS["logo"])


async def _generate(request: Request, body: GenerateRequest, account: Account, engine: ImageEngine,
                    variant: Variant | None):
    if body.items is None and body.prompt is None:
        raise RequestValidationError([{"loc": ("body", "prompt"), "msg": "Field required", "type": "missing"}])

    async def produce():
        if body.items is None:
            return await _single(request, body, account, engine, variant)
        return await _batch(request, body, account, engine, variant)

    return await idempotent(request, engine, account.user, produce)


def _resolve(engine: ImageEngine, params: GenerationParams, variant: Variant | None) -> tuple[ResolvedParams, int]:
    if variant:
        params = apply_variant(params, variant, engine.resolve_model(params.model)[0])
    resolved = engine.prepare(params)
    return resolved, engine.credits_for(resolved)


async def _single(request: Request, body: GenerateRequest, account: Account, engine: ImageEngine,
                  variant: Variant | None):
    try:
        params = GenerationParams(**body.model_dump(exclude={"items", "run_async", "callback_url"}))
    except ValidationError as exc:  # e.g. a prompt of spaces: fine for GenerateRequest, empty once stripped
        raise RequestValidationError(exc.errors()) from exc
    # The engine reads the database (catalog, settings, storage quota) and writes the job row: not on the loop.
    webhook = await webhook_target(request, engine, body.callback_url, body.run_async)
    resolved, cost = await asyncio.to_thread(_resolve, engine, params, variant)
    storage = await asyncio.to_thread(engine.storage_for, account.user)
    kind = variant.name if variant else "generate"

    async def work(admission: Admission):
        task = await asyncio.to_thread(engine.submit_generation, account.user, resolved, store=storage["store"],
                                       kind=kind, charge_id=admission.charge_id, cost=cost,
                                       async_job=async_job_of(request, engine, body.run_async, webhook))
        return await respond_with_image(request, engine, admission, task, storage=storage, cost=cost,
                                        run_async=body.run_async, variant=kind, webhook=webhook)

    return await metered(request, engine, account.workspace.id, requests=1, credits=cost, work=work)


# The seed API's words for a batch item refused by a rate limit; the exact reason is in error_details.
RATE_LIMIT_EXCEEDED = "Rate limit exceeded"


def batch_failure(index: int, error: dict) -> dict:
    """A failed item in the seed API's flat shape (``error`` a string) with the machine-readable error beside."""
    message = RATE_LIMIT_EXCEEDED if error["code"] == "rate_limited" else error["message"]
    return {"index": index, "success": False, "error": message, "error_code": error["code"], "error_details": error}


def _plan_items(engine: ImageEngine, body: GenerateRequest,
                variant: Variant | None) -> list[tuple[ResolvedParams, int] | dict]:
    """Per item: (params, credits), or the error that item fails with (blocking: the engine reads the catalog)."""
    defaults = body.item_defaults()
    planned: list[tuple[ResolvedParams, int] | dict] = []
    for index, item in enumerate(body.items):
        try:
            planned.append(_resolve(engine, GenerationParams.model_validate({**defaults, **item}, strict=True), variant))
        except ValidationError as exc:
            detail = validation_details(exc.errors())[0]
            field = f"items.{index}.{detail['field']}"
            planned.append({"code": "validation_error", "message": f"{field}: {detail['message']}", "field": field})
        except EngineError as exc:
            planned.append(error_for(exc))
    return planned


async def _batch(request: Request, body: GenerateRequest, account: Account, engine: ImageEngine,
                 variant: Variant | None):
    limit = min(account.plan.max_batch_size, engine.runtime.get("max_batch_size"))
    if len(body.items) > limit:
        raise InvalidRequest(f"a batch may hold at most {limit} items on the {account.plan.name} plan",
                             field="items")
    if wants_async(request, body.run_async):
        raise InvalidRequest("async mode takes single requests; send the items one by one", field="async")
    if body.callback_url is not None:
        raise InvalidRequest("callback_url takes single async requests; send the items one by one",
                             field="callback_url")
    planned = await asyncio.to_thread(_plan_items, engine, body, variant)
    runnable = [index for index, plan in enumerate(planned) if isinstance(plan, tuple)]
    storage = await asyncio.to_thread(engine.storage_for, account.user)
    kind = variant.name if variant else "generate"

    async def work(admission: Admission | None):
        # Items past what the limits and the balance allow were refused at admission, each with its reason.
        refused = zip(runnable[admission.requests:], admission.refusals, strict=True) if admission else ()
        for index, refusal in refused:
            planned[index] = error_for(refusal)
        tasks = {}
        for index, plan in enumerate(planned):
            if isinstance(plan, tuple):
                try:
                    tasks[index] = await asyncio.to_thread(
                        engine.submit_generation, account.user, plan[0], store=storage["store"], kind=kind,
                        charge_id=admission.charge_id, cost=plan[1])
                except EngineError as exc:
                    planned[index] = error_for(exc)
        futures = dict(zip(tasks, await wait_for_client(request, engine, list(tasks.values())), strict=True))
        results = []
        for index, plan in enumerate(planned):
            if index not in futures:
                results.append(batch_failure(index, plan))
                continue
            try:
                result = futures[index].result()
            except EngineError as exc:
                results.append(batch_failure(index, error_for(exc)))
                continue
            admission.succeeded(images=1, credits=plan[1])
            results.append({"index": index, "success": True, **image_payload(
                result, request, engine, storage, variant=kind, credits_used=plan[1])})
        succeeded = sum(r["success"] for r in results)
        return ok(BatchData.model_validate({"results": results, "total": len(results), "succeeded": succeeded,
                                            "failed": len(results) - succeeded}))

    if not runnable:  # nothing to run, nothing to charge
        return await work(None)
    return await metered(request, engine, account.workspace.id, costs=[planned[i][1] for i in runnable], work=work)
