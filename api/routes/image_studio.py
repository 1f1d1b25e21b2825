"""POST /image-studio: one endpoint for generate, edit, background removal and prompt enhancement.

With an input image, the intent decides: "remove background", "clear bg", "transparent background"
and the like go to background removal; anything else edits the image with the model's
image-to-image pipeline.
"""

import asyncio
import dataclasses
import re
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field

from api.deps import Account, AccountDep, EngineDep
from api.responses import (
    async_job_of,
    error_responses,
    idempotent,
    metered,
    ok,
    outbound,
    respond_with_image,
    webhook_target,
)
from api.routes.generate import RESPONSES
from api.routes.prompt import EnhancedPrompt, enhance_prompt, enhanced_payload
from api.schemas import Envelope, ImageData
from engine.billing.metering import Admission
from engine.billing.pricing import BACKGROUND_REMOVAL_CREDITS
from engine.generation.inputs import InputLimits, parse_image_input
from engine.generation.params import (
    ASPECT_RATIOS,
    GenerationParams,
    ResolvedParams,
    StoredText,
    size_for_aspect,
    size_like,
)
from engine.service import ImageEngine
from engine.tools.prompts import MAX_TONE_CHARS

router = APIRouter(tags=["image-studio"])

REMOVE_BACKGROUND_INTENT = re.compile(
    r"\b(remove|delete|erase|strip|clear|drop|cut\s*out|get rid of|no)\b[\w\s-]{0,20}?\b(background|bg|backdrop)\b"
    r"|\btransparent\s+(background|bg|png)\b|\bbackground\s+removal\b|\bcut\s*-?\s*out\b|\bremove\s*bg\b",
    re.IGNORECASE)

AspectRatio = Literal["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]
assert set(AspectRatio.__args__) == set(ASPECT_RATIOS)


class ImageStudioRequest(GenerationParams):
    action: Literal["generate", "enhance_prompt", "edit", "remove_background"] = "generate"
    prompt: StoredText | None = Field(default=None, min_length=1, max_length=10_000)
    aspect_ratio: AspectRatio | None = None
    width: int | None = Field(default=None, ge=256, le=1024)
    height: int | None = Field(default=None, ge=256, le=1024)
    input_image: str | None = Field(default=None, description="A data URL, raw base64, or an http(s) URL")
    strength: float = Field(default=0.6, gt=0, le=1, description="How much an edit may change the input")
    tone: str | None = Field(default=None, max_length=MAX_TONE_CHARS, description="For enhance_prompt: free text")
    run_async: bool = Field(default=False, alias="async")
    callback_url: str | None = Field(default=None, max_length=2000,
                                     description="Async only: where the signed webhook goes when the job ends")

    model_config = {"populate_by_name": True, "extra": "forbid", "str_strip_whitespace": True, "strict": True}


class StudioImage(ImageData):
    action: Literal["generate", "edit", "remove_background"]


class StudioPrompt(EnhancedPrompt):
    action: Literal["enhance_prompt"]
    credits_used: int = 0


class StudioImageEnvelope(Envelope[StudioImage]):
    image_url: str = Field(description="The image again beside `data`, where the Image Studio document reads it")


def wants_background_removal(body: ImageStudioRequest) -> bool:
    return body.action == "remove_background" or bool(body.prompt and REMOVE_BACKGROUND_INTENT.search(body.prompt))


@router.post("/image-studio", response_model=StudioImageEnvelope | Envelope[StudioPrompt],
             responses=RESPONSES | error_responses(415))
async def image_studio(request: Request, body: ImageStudioRequest, account: AccountDep, engine: EngineDep):
    """`action`: `generate` (default), `enhance_prompt`, `edit` or `remove_background`; an `input_image` with a
    background-removal intent is routed to background removal automatically."""
    if body.prompt is None and not (body.input_image and wants_background_removal(body)):
        raise RequestValidationError([{"loc": ("body", "prompt"), "msg": "Field required", "type": "missing"}])
    if body.action in ("edit", "remove_background") and not body.input_image:
        raise RequestValidationError([{"loc": ("body", "input_image"), "msg": f"Field required for {body.action}",
                                       "type": "missing"}])
    if (body.width is None) != (body.height is None):
        missing = "height" if body.height is None else "width"
        raise RequestValidationError([{"loc": ("body", missing), "msg": "width and height go together",
                                       "type": "missing"}])

    async def produce():
        if body.action == "enhance_prompt":
            return await _enhance(body, account, engine)
        if body.input_image and wants_background_removal(body):
            return await _remove_background(request, body, account, engine)
        return await _generate_or_edit(request, body, account, engine)

    return await idempotent(request, engine, account.user, produce)


async def _enhance(body: ImageStudioRequest, account: Account, engine: ImageEngine):
    result = await enhance_prompt(engine, account, body.prompt, body.tone)  # free: no credits, no quota
    return ok({"action": "enhance_prompt", **enhanced_payload(result), "credits_used": 0})


async def _load_input(engine: ImageEngine, value: str):
    limits = InputLimits(allow_private_hosts=engine.settings.allow_private_fetch)
    return await outbound(engine, parse_image_input, value, limits)


async def _remove_background(request: Request, body: ImageStudioRequest, account: Account, engine: ImageEngine):
    webhook = await webhook_target(request, engine, body.callback_url, body.run_async)
    storage = await asyncio.to_thread(engine.storage_for, account.user)
    cost = BACKGROUND_REMOVAL_CREDITS

    async def work(admission: Admission):
        image = await _load_input(engine, body.input_image)  # admitted first: over its limits, no fetch at all
        task = await asyncio.to_thread(engine.submit_background_removal, account.user, image,
                                       prompt=body.prompt or "", store=storage["store"],
                                       charge_id=admission.charge_id, cost=cost,
                                       async_job=async_job_of(request, engine, body.run_async, webhook))
        return await respond_with_image(request, engine, admission, task, storage=storage, cost=cost,
                                        run_async=body.run_async, image_url_on_top=True, webhook=webhook,
                                        action="remove_background", variant="remove_background")

    return await metered(request, engine, account.workspace.id, requests=1, credits=cost, work=work)


async def _generate_or_edit(request: Request, body: ImageStudioRequest, account: Account, engine: ImageEngine):
    # Validated and priced before admission, admitted before the input image is fetched or decoded. An edit
    # sized like its input is priced at the model's native size, so its price doesn't wait for the image.
    webhook = await webhook_target(request, engine, body.callback_url, body.run_async)
    resolved = await asyncio.to_thread(_prepare, engine, body, None)
    cost = await asyncio.to_thread(engine.credits_for, resolved)
    storage = await asyncio.to_thread(engine.storage_for, account.user)
    action = "edit" if body.input_image else "generate"

    async def work(admission: Admission):
        params, image = resolved, None
        if body.input_image:
            image = await _load_input(engine, body.input_image)
            params = await asyncio.to_thread(_prepare, engine, body, image)
        task = await asyncio.to_thread(engine.submit_generation, account.user, params, store=storage["store"],
                                       kind=action, init_image=image, strength=body.strength,
                                       charge_id=admission.charge_id, cost=cost,
                                       async_job=async_job_of(request, engine, body.run_async, webhook))
        return await respond_with_image(request, engine, admission, task, storage=storage, cost=cost,
                                        run_async=body.run_async, image_url_on_top=True, action=action,
                                        variant=action, webhook=webhook)

    return await metered(request, engine, account.workspace.id, requests=1, credits=cost, work=work)


def _prepare(engine: ImageEngine, body: ImageStudioRequest, image) -> ResolvedParams:
    """The parameters that run, sized by aspect ratio or the input image (blocking: the engine reads the catalog)."""
    spec = engine.resolve_model(body.model)[0]
    if body.width and body.height:
        width, height = body.width, body.height
    elif body.aspect_ratio or image is None:
        width, height = size_for_aspect(spec, body.aspect_ratio or "1:1")
    else:
        width, height = size_like(spec, image.width, image.height)
    # Built without re-validation: image-studio allows 10,000-character prompts (generate allows 2,000).
    params = GenerationParams.model_construct(**{**body.model_dump(include=set(GenerationParams.model_fields)),
                                                 "width": width, "height": height})
    resolved = engine.prepare(params)
    if image is not None and "strength" in body.model_fields_set and not spec.edit_uses_strength:
        resolved = dataclasses.replace(resolved, warnings=resolved.warnings + (
            f"strength was not used: {spec.name} edits by reference, without a strength",))
    return resolved
