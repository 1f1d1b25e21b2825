"""The OpenAI Images API (`/v1/images/generations`, `/v1/models`; edits and variations in `openai_edits`), for the `openai` SDKs and everything built on
them: a client changes only its base URL (`…/v1`) and key. Answers and errors in OpenAI's shapes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Account, AccountDep, CurrentUser, EngineDep
from api.responses import (
    FastJSONResponse,
    base_url,
    encoded_as,
    hosted_link,
    idempotent,
    image_response,
    metered,
    signed_result_path,
    wait_for_client,
)
from engine.billing.metering import Admission
from engine.errors import InvalidRequest, NotFound
from engine.generation.jobs import GenerationResult
from engine.generation.params import GenerationParams, ResolvedParams
from engine.service import ImageEngine
from engine.storage.gallery import signed_image_path, valid_signature

router = APIRouter(prefix="/v1", tags=["OpenAI Images"])

# OpenAI's own model names run the server's default model, unless an admin aliased them to another one.
OPENAI_MODELS = ("dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini")
MAX_PROMPT_CHARS = 4000  # dall-e-3's limit; longer prompts are a 400, as at OpenAI
STYLE_WORDS = {"vivid": "vivid colors, dramatic lighting, hyper-detailed", "natural": ""}
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


class ImageGenerationRequest(BaseModel):
    # OpenAI refuses arguments it doesn't know (400): so do we, so a typo never passes silently.
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, max_length=64)
    n: int = Field(default=1, ge=1, le=10)
    size: str = "auto"
    quality: Literal["auto", "standard", "hd", "low", "medium", "high"] = "auto"
    style: Literal["vivid", "natural"] | None = None
    response_format: Literal["url", "b64_json"] = "url"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    background: Literal["auto", "opaque", "transparent"] = "auto"
    user: str | None = Field(default=None, max_length=256)


def parse_size(value: str) -> tuple[int, int] | None:
    if value == "auto":
        return None
    match = _SIZE.match(value)
    if not match:
        raise InvalidRequest(f"size must be 'auto' or WIDTHxHEIGHT such as '1024x1024', not {value!r}",
                             field="size")
    return int(match[1]), int(match[2])


def catalog_slug(engine: ImageEngine, model: str | None) -> str | None:
    """The catalog slug a request's ``model`` names; OpenAI's own names run the default (None) unless aliased."""
    if model in OPENAI_MODELS and model not in engine.model_aliases():
        return None
    return model


def steps_for_quality(default: int, quality: str) -> int:
    """OpenAI's quality as denoising steps: fewer for low, the model's own for standard, more for high/hd."""
    if quality == "low":
        return max(1, default // 2)
    if quality in ("high", "hd"):
        return min(50, default * 2)
    return default


def _plan(engine: ImageEngine, body: ImageGenerationRequest):
    """Validated parameters for each of the ``n`` images and their price (blocking: the catalog is read)."""
    if body.background == "transparent":
        raise InvalidRequest("background 'transparent' is not supported here; remove the background with "
                             "/api/v1/image-studio (action remove_background)", field="background")
    slug = catalog_slug(engine, body.model)
    prompt = body.prompt if not body.style or not STYLE_WORDS[body.style] else f"{body.prompt}, {STYLE_WORDS[body.style]}"
    size = parse_size(body.size)
    fields = {"prompt": prompt, "model": slug}
    if size:
        fields.update(width=size[0], height=size[1])
    resolved = prepared_images(engine, fields, body.n, body.quality)  # compatible: the worker batches them
    return resolved, engine.credits_for(resolved[0])


def prepared_images(engine: ImageEngine, fields: dict, n: int, quality: str) -> list[ResolvedParams]:
    """``n`` images of these GenerationParams ``fields``, each with its own random seed, steps set by ``quality``
    (blocking: the catalog is read)."""
    # Built without re-validation of the prompt's length (OpenAI allows 4000 where /generate allows 2000).
    params = GenerationParams.model_construct(**GenerationParams(prompt="x").model_dump() | fields)
    resolved = []
    for _ in range(n):
        one = engine.prepare(params)
        resolved.append(dataclasses.replace(one, steps=steps_for_quality(one.steps, quality)))
    return resolved


def data_item(request: Request, engine: ImageEngine, result: GenerationResult, response_format: str,
              output_format: str) -> dict:
    """One entry of ``data``: the image inline (``b64_json``) or as a signed link (``url``)."""
    item: dict = {"revised_prompt": result.params.prompt}
    if response_format == "b64_json":
        item["b64_json"] = base64.b64encode(encoded_as(result.png, output_format)).decode()
        return item
    fmt = "" if output_format == "png" else f"&format={output_format}"
    if result.stored and output_format == "png":
        item["url"] = hosted_link(base_url(request, engine), engine, result.image_id, result.file_path)
    elif result.stored:  # converted on the way out: our link, never the object's
        item["url"] = base_url(request, engine) + signed_image_path(result.image_id, engine.keys.image_links) + fmt
    else:  # not stored on this plan: a signed link to the job's short-lived copy
        item["url"] = base_url(request, engine) + signed_result_path(result.job_id, engine) + fmt
    return item


@router.post("/images/generations", summary="Create images (OpenAI Images API)")
async def create_images(request: Request, body: ImageGenerationRequest, account: AccountDep, engine: EngineDep):
    """`n` images from a prompt; `url` (signed links) or `b64_json`. Limits, credits, storage and idempotency
    as on `/api/v1/generate`; `n` images count as `n` requests."""
    async def produce():
        return await _generate(request, body, account, engine)

    return await idempotent(request, engine, account.user, produce)


async def _generate(request: Request, body: ImageGenerationRequest, account: Account, engine: ImageEngine):
    resolved, cost = await asyncio.to_thread(_plan, engine, body)
    storage = await asyncio.to_thread(engine.storage_for, account.user)

    async def work(admission: Admission):
        tasks = []
        for params in resolved:
            tasks.append(await asyncio.to_thread(engine.submit_generation, account.user, params,
                                                 store=storage["store"], charge_id=admission.charge_id, cost=cost))
        return await answer_with_images(request, engine, admission, tasks, cost, response_format=body.response_format,
                                        output_format=body.output_format, quality=body.quality)

    return await metered(request, engine, account.workspace.id, requests=body.n, credits=cost * body.n, work=work)


async def answer_with_images(request: Request, engine: ImageEngine, admission: Admission, tasks: list, cost: int, *,
                             response_format: str, output_format: str, quality: str) -> FastJSONResponse:
    """Wait for every image (the caller hanging up cancels them), then answer in OpenAI's shape."""
    futures = await wait_for_client(request, engine, tasks)
    results = [future.result() for future in futures]  # one failure fails the request, as at OpenAI
    for _ in results:
        admission.succeeded(images=1, credits=cost)
    first = results[0].params
    return FastJSONResponse({
        "created": int(time.time()),
        "data": [data_item(request, engine, result, response_format, output_format) for result in results],
        # gpt-image-1's fields beside the data, and ours: what actually ran.
        "background": "opaque", "output_format": output_format, "quality": quality,
        "size": f"{first.width}x{first.height}", "model": first.model,
    })


@router.get("/images/results/{job_id}", include_in_schema=False)
def job_result_file(job_id: str, engine: EngineDep, expires: int, signature: str, format: str = "png"):
    """An unstored image's short-lived copy, by the signed link a generation answered with."""
    if not valid_signature(f"result:{job_id}", expires, signature, engine.keys.image_links):
        raise NotFound(f"no image for job '{job_id}'")
    png = engine.results.get(job_id)
    if png is None:
        raise NotFound(f"the image of job '{job_id}' has expired")
    return image_response(png, format, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/models", summary="Models (OpenAI shape)")
def list_models(user: CurrentUser, engine: EngineDep):
    """Every model slug this server runs, its aliases, and OpenAI's image model names (which run the default)."""
    created = int(engine.started_at)
    ids = [spec.slug for spec in engine.catalog.all()] + sorted(engine.model_aliases())
    ids += [name for name in OPENAI_MODELS if name not in ids]
    return FastJSONResponse({"object": "list", "data": [
        {"id": slug, "object": "model", "created": created, "owned_by": "image-studio"} for slug in ids]})
