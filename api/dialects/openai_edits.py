"""OpenAI's image edits and variations (`/v1/images/edits`, `/v1/images/variations`): multipart uploads, answered
like generations. With a mask (or, as with dall-e-2, an image with transparent pixels) an edit is inpainting
through the model family's diffusers inpaint pipeline; without one it is image-to-image."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from api.deps import Account, AccountDep, EngineDep
from api.dialects.openai_images import MAX_PROMPT_CHARS, answer_with_images, catalog_slug, parse_size, prepared_images
from api.responses import idempotent, metered
from engine.billing.metering import Admission
from engine.errors import InvalidRequest
from engine.generation.inputs import InputLimits, decode_image_bytes
from engine.generation.params import ResolvedParams, size_like
from engine.service import ImageEngine

router = APIRouter(prefix="/v1", tags=["OpenAI Images"])

MAX_IMAGES = 16  # gpt-image-1 takes up to 16 reference images
# How far an edit may move from its image: without a mask the whole picture changes a little (input_fidelity
# "high" keeps more of it); inside a mask the picture is new, as at OpenAI.
EDIT_STRENGTH = {"high": 0.5, "low": 0.8, None: 0.7}
INPAINT_STRENGTH = 1.0
VARIATION_STRENGTH = 0.6
# A variation of an image this server made reuses the prompt in its PNG metadata; of any other image, this one.
VARIATION_PROMPT = "a variation of the image"


class _FormModel(BaseModel):
    # Form fields arrive as text ("2" for n): parsed leniently, but unknown fields are refused as at OpenAI.
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=64)
    n: int = Field(default=1, ge=1, le=10)
    size: str = "auto"
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = Field(default=None, max_length=256)


class ImageEditRequest(_FormModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    quality: Literal["auto", "standard", "low", "medium", "high"] = "auto"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    background: Literal["auto", "opaque"] = "auto"
    input_fidelity: Literal["high", "low"] | None = None
    strength: float | None = Field(default=None, gt=0, le=1)  # ours: overrides input_fidelity


class ImageVariationRequest(_FormModel):
    pass


@dataclasses.dataclass
class Upload:
    fields: dict[str, str]
    images: list[bytes]
    mask: bytes | None
    fingerprint: str  # of the fields and files, not of the multipart body: a retry has a new boundary


async def read_upload(request: Request, image_fields: tuple[str, ...], mask_allowed: bool) -> Upload:
    form = await request.form(max_files=MAX_IMAGES + 1, max_fields=32)
    fields: dict[str, str] = {}
    images: list[bytes] = []
    mask = None
    digest = hashlib.sha256()
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            digest.update(f"{name}:{hashlib.sha256(data).hexdigest()};".encode())
            if name in image_fields:
                images.append(data)
            elif name == "mask" and mask_allowed and mask is None:
                mask = data
            else:
                raise InvalidRequest(f"unexpected file field '{name}'", field=name)
        elif name in fields:
            raise InvalidRequest(f"'{name}' was sent more than once", field=name)
        else:
            fields[name] = value
    if not images:
        raise InvalidRequest("an image file is required (multipart field 'image')", field="image")
    if len(images) > MAX_IMAGES:
        raise InvalidRequest(f"at most {MAX_IMAGES} images may be sent", field="image")
    digest.update(json.dumps(fields, sort_keys=True).encode())
    return Upload(fields=fields, images=images, mask=mask, fingerprint=digest.hexdigest())


def _validated(model: type[BaseModel], fields: dict[str, str]):
    try:
        return model.model_validate(fields)
    except ValidationError as exc:  # answered like any invalid request, in OpenAI's shape (400)
        raise RequestValidationError(exc.errors()) from None


def _decode(engine: ImageEngine, upload: Upload) -> tuple[list[Image.Image], Image.Image | None]:
    limits = InputLimits(allow_private_hosts=engine.settings.allow_private_fetch)
    images = [decode_image_bytes(data, limits, field="image") for data in upload.images]
    mask = decode_image_bytes(upload.mask, limits, field="mask") if upload.mask is not None else None
    return images, mask


def inpaint_mask(mask: Image.Image, image: Image.Image) -> Image.Image:
    """OpenAI's mask (transparent where the image is to change) as diffusers' (white where it is repainted)."""
    if mask.mode != "RGBA":
        raise InvalidRequest("mask must be a PNG with an alpha channel: its fully transparent pixels mark what to "
                             "edit", field="mask")
    if mask.size != image.size:
        raise InvalidRequest(f"mask is {mask.width}x{mask.height} but image is {image.width}x{image.height}; "
                             "they must be the same size", field="mask")
    return ImageOps.invert(mask.getchannel("A"))


def transparent_area(image: Image.Image) -> Image.Image | None:
    """dall-e-2's edit without a mask: the image's own transparent pixels are what to edit."""
    if image.mode != "RGBA" or image.getchannel("A").getextrema()[0] != 0:
        return None
    return ImageOps.invert(image.getchannel("A"))


def _plan(engine: ImageEngine, model: str | None, prompt: str, size: str, n: int, quality: str,
          like: Image.Image) -> tuple[list[ResolvedParams], int]:
    """Parameters for each of ``n`` images (sized like the input for size "auto") and the price of one."""
    slug = catalog_slug(engine, model)
    spec = engine.resolve_model(slug)[0]
    width, height = parse_size(size) or size_like(spec, like.width, like.height)
    resolved = prepared_images(engine, {"prompt": prompt, "model": slug, "width": width, "height": height}, n,
                               quality)
    return resolved, engine.credits_for(dataclasses.replace(resolved[0], width=width, height=height))


def _plan_edit(engine: ImageEngine, body: ImageEditRequest, upload: Upload):
    images, mask = _decode(engine, upload)
    resolved, cost = _plan(engine, body.model, body.prompt, body.size, body.n, body.quality, images[0])
    spec = engine.catalog.get(resolved[0].model)
    if mask is not None:
        mask = inpaint_mask(mask, images[0])
    elif len(images) == 1 and spec.inpaint_pipeline_class:
        mask = transparent_area(images[0])
    strength = body.strength or (INPAINT_STRENGTH if mask is not None else EDIT_STRENGTH[body.input_fidelity])
    return resolved, cost, images, mask, strength


def _plan_variation(engine: ImageEngine, body: ImageVariationRequest, upload: Upload):
    if len(upload.images) > 1:
        raise InvalidRequest("a variation is made of one image", field="image")
    images, _ = _decode(engine, upload)
    prompt = _recorded_prompt(images[0]) or VARIATION_PROMPT
    resolved, cost = _plan(engine, body.model, prompt, body.size, body.n, "auto", images[0])
    return resolved, cost, images


def _recorded_prompt(image: Image.Image) -> str | None:
    try:
        prompt = json.loads(image.info.get("imagestudio", "{}")).get("prompt")
    except (ValueError, AttributeError):  # not our metadata, or not JSON of ours
        return None
    return prompt if isinstance(prompt, str) and prompt.strip() else None


@router.post("/images/edits", summary="Edit images (OpenAI Images API)")
async def create_edit(request: Request, account: AccountDep, engine: EngineDep):
    """Multipart `image` (or several as `image[]`), `prompt`, optional `mask`: transparent pixels of the mask are
    repainted (inpainting); without a mask the whole image is edited. Limits, credits, storage and idempotency as
    on `/api/v1/image-studio` edits."""
    upload = await read_upload(request, ("image", "image[]"), mask_allowed=True)
    body = _validated(ImageEditRequest, upload.fields)

    async def produce():
        resolved, cost, images, mask, strength = await asyncio.to_thread(_plan_edit, engine, body, upload)
        return await _run(request, engine, account, resolved, cost, images, body.response_format,
                          body.output_format, body.quality, mask=mask, strength=strength)

    return await idempotent(request, engine, account.user, produce, fingerprint=upload.fingerprint)


@router.post("/images/variations", summary="Image variations (OpenAI Images API)")
async def create_variation(request: Request, account: AccountDep, engine: EngineDep):
    """Multipart `image`: `n` images like it (image-to-image from the prompt recorded in the image, if it was made
    here, else a neutral one)."""
    upload = await read_upload(request, ("image",), mask_allowed=False)
    body = _validated(ImageVariationRequest, upload.fields)

    async def produce():
        resolved, cost, images = await asyncio.to_thread(_plan_variation, engine, body, upload)
        return await _run(request, engine, account, resolved, cost, images, body.response_format, "png", "auto",
                          mask=None, strength=VARIATION_STRENGTH, kind="variation")

    return await idempotent(request, engine, account.user, produce, fingerprint=upload.fingerprint)


async def _run(request: Request, engine: ImageEngine, account: Account, resolved: list[ResolvedParams], cost: int,
               images: list[Image.Image], response_format: str, output_format: str, quality: str, *,
               mask: Image.Image | None, strength: float, kind: str = "edit"):
    storage = await asyncio.to_thread(engine.storage_for, account.user)

    async def work(admission: Admission):
        tasks = []
        for params in resolved:  # edits run one by one, each with its own seed
            tasks.append(await asyncio.to_thread(
                engine.submit_generation, account.user, params, store=storage["store"], kind=kind,
                init_image=images, strength=strength, mask=mask, charge_id=admission.charge_id, cost=cost))
        return await answer_with_images(request, engine, admission, tasks, cost, response_format=response_format,
                                        output_format=output_format, quality=quality)

    return await metered(request, engine, account.workspace.id, requests=len(resolved),
                         credits=cost * len(resolved), work=work)
