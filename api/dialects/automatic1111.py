"""The AUTOMATIC1111 web UI API (`/sdapi/v1/*`), for the clients built on it: the `webuiapi` package, Open WebUI,
SillyTavern, editor plugins. A client points at `http://host:port` (it adds `/sdapi/v1` itself) and authenticates
with an API key: HTTP Basic with the key as the password (A1111's `--api-auth`), or `Authorization: Bearer`.

Limits, credits, storage, idempotency, request ids and the API log are those of `/api/v1/generate`; each of
`batch_size × n_iter` images counts as one request. Answers and errors come in A1111's shapes.

A1111 clients send every field of A1111's request models, most at their defaults. How each is treated:
- honoured: prompt, negative_prompt, seed, batch_size, n_iter, steps, cfg_scale, width, height, sampler_name
  (sampler_index), scheduler, denoising_strength (img2img), init_images, mask, inpainting_mask_invert,
  send_images, override_settings.sd_model_checkpoint;
- no effect here by nature, any value accepted: the save flags (storage follows the plan), hires-fix fields while
  enable_hr is false, override_settings_restore_afterwards, force_task_id, image_cfg_scale (instruct-pix2pix
  only, as in A1111), inpaint_full_res (the whole picture is inpainted), comments, disable_extra_networks,
  include_init_images (honoured in `parameters`);
- tuning we don't do, silent at A1111's default (or a value that does the same), else a warning in `info`: eta,
  s_churn/s_noise/s_tmin/s_tmax, s_min_uncond, resize_mode, mask_blur, inpainting_fill, initial_noise_multiplier,
  override_settings other than the checkpoint (CLIP skip, VAE), extra-network tags (`<lora:…>`) in prompts;
- would change the picture and can't be done: a 422 naming the field (enable_hr, restore_faces, tiling, styles,
  subseed_strength, seed_resize_from_*, script_name, alwayson_scripts, refiner_checkpoint, infotext, latent_mask);
- fields A1111 doesn't know: ignored (A1111 ignores them too, and clients such as SillyTavern send their own),
  named in a warning, never echoed back (they may hold credentials).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import Account, AccountDep, CurrentUser, EngineDep
from api.errors import current_request_id
from api.responses import FastJSONResponse, idempotent, metered, wait_for_client
from api.routes.models import model_info
from engine import __version__
from engine.billing.metering import Admission
from engine.data.tables import User
from engine.errors import EngineError, InvalidRequest, JobCancelled, ModelNotFound
from engine.generation.activity import active_jobs, cancel_active
from engine.generation.inputs import InputLimits, parse_image_input
from engine.generation.jobs import GenerationResult
from engine.generation.params import MAX_SEED, GenerationParams, ResolvedParams, StoredText
from engine.generation.samplers import SAMPLERS, SCHEDULES, SamplerChoice, choose_sampler, replace_sampler
from engine.generation.worker import Task
from engine.service import ImageEngine

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111"])

CHECKPOINT_PREFERENCE = "a1111_checkpoint"  # user.preferences key: the model POST /options chose
MAX_PROMPT_CHARS = 10_000
MAX_INIT_IMAGES = 16
_EXTRA_NETWORK = re.compile(r"<(lora|lyco|hypernet|embedding):", re.IGNORECASE)
_TITLE_HASH = re.compile(r"^(.*?)\s*\[[0-9a-fA-F]{8,64}\]$")
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin", ".gguf")


# -- requests ---------------------------------------------------------------------------------------------

class _A1111Request(BaseModel):
    """Fields of A1111 1.10's StableDiffusionProcessing API models. Loose like A1111's: numbers given as strings
    are read, ``null`` means the default, unknown fields are kept aside (``model_extra``) to be named in a warning."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    prompt: StoredText = Field(default="", max_length=MAX_PROMPT_CHARS)
    negative_prompt: StoredText = Field(default="", max_length=MAX_PROMPT_CHARS)
    styles: list[str] = Field(default_factory=list)
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1: random; image i gets seed + i")
    subseed: int = Field(default=-1, ge=-1, le=MAX_SEED)
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = Field(default=None, max_length=64, description="e.g. Euler a, DPM++ 2M; omitted: "
                                                                              "the model's own scheduler")
    sampler_index: str | None = Field(default=None, max_length=64, description="Older name of sampler_name")
    scheduler: str | None = Field(default=None, max_length=64, description="automatic, karras, exponential, …")
    batch_size: int = Field(default=1, ge=1, le=100)
    n_iter: int = Field(default=1, ge=1, le=100)
    steps: int | None = Field(default=None, ge=1, le=50, description="Omitted: the model's default")
    cfg_scale: float | None = Field(default=None, ge=0, le=30, description="Omitted: the model's default")
    width: int | None = Field(default=None, ge=64, le=2048, description="Omitted: the model's native size")
    height: int | None = Field(default=None, ge=64, le=2048, description="Omitted: the model's native size")
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        # A1111's fields are all Optional and None means "the default": clients send nulls freely.
        return {key: value for key, value in data.items() if value is not None} if isinstance(data, dict) else data

    def known(self) -> dict[str, Any]:
        """The request as A1111 echoes it in ``parameters``: every known field, defaults filled in."""
        return self.model_dump(include=set(type(self).model_fields))


class Txt2ImgRequest(_A1111Request):
    enable_hr: bool = False
    denoising_strength: float | None = None  # txt2img: the hires-fix pass only
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class Img2ImgRequest(_A1111Request):
    init_images: list[str] = Field(min_length=1, max_length=MAX_INIT_IMAGES,
                                   description="Base64 images, with or without a data: prefix")
    resize_mode: int = 0
    denoising_strength: float = Field(default=0.75, gt=0, le=1)
    image_cfg_scale: float | None = None
    mask: str | None = Field(default=None, description="Base64; white is repainted (inpainting)")
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = Field(default=0, ge=0, le=3)
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = Field(default=0, ge=0, le=1)
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False

    def known(self) -> dict[str, Any]:
        values = super().known()
        if not self.include_init_images:  # as A1111: the input images are not sent back unless asked for
            values["init_images"] = values["mask"] = None
        return values


def _refusals(body: _A1111Request) -> list[dict]:
    """Fields set to something that would change the picture and that this server can't do: each a 422 detail."""
    refused: list[tuple[str, str]] = []
    if isinstance(body, Txt2ImgRequest) and body.enable_hr:
        refused.append(("enable_hr", "hires fix is not supported: send enable_hr false and the final width/height"))
    if body.restore_faces:
        refused.append(("restore_faces", "face restoration is not supported"))
    if body.tiling:
        refused.append(("tiling", "tiling is not supported"))
    if body.styles:
        refused.append(("styles", "prompt styles are not kept on this server: put the style's text in the prompt"))
    if body.subseed_strength:
        refused.append(("subseed_strength", "variation seeds are not supported: send subseed_strength 0"))
    if body.seed_resize_from_w > 0 and body.seed_resize_from_h > 0:
        refused.append(("seed_resize_from_w", "seed resize is not supported"))
    if body.script_name:
        refused.append(("script_name", f"Script '{body.script_name[:64]}' not found"))
    for name in list(body.alwayson_scripts)[:10]:
        refused.append((f"alwayson_scripts.{name[:64]}", f"always on script {name[:64]} not found"))
    if body.refiner_checkpoint and body.refiner_checkpoint != "None":
        refused.append(("refiner_checkpoint", "refiner models are not supported"))
    if body.infotext:
        refused.append(("infotext", "infotext is not read here: send the parameters as fields"))
    if isinstance(body, Img2ImgRequest) and body.latent_mask:
        refused.append(("latent_mask", "latent_mask is not supported: send the mask in `mask`"))
    return [{"loc": ("body", *field.split(".", 1)), "msg": message, "type": "unsupported"}
            for field, message in refused]


def _warnings(body: _A1111Request, choice: SamplerChoice | None) -> list[str]:
    """What was asked, not done, and worth telling (values with no effect, as in A1111, are not mentioned)."""
    notes: list[str] = []
    unknown = sorted(body.model_extra or {})
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:12]) + (", …" if len(unknown) > 12 else "")
        notes.append(f"unknown fields were ignored: {shown}")
    sampler = choice.sampler if choice else None
    if body.eta is not None and sampler is not None and sampler.eta_default is not None \
            and body.eta != sampler.eta_default:
        notes.append(f"eta {body.eta:g} was not used: {sampler.name} runs with eta {sampler.eta_default:g}")
    if body.s_churn and (sampler is None or sampler.uses_churn):
        notes.append("s_churn (and s_noise, s_tmin, s_tmax) were not used: stochastic churn is not supported")
    if body.s_min_uncond:
        notes.append("s_min_uncond was not used: negative guidance minimum sigma is not supported")
    for key, value in body.override_settings.items():
        if key == "sd_model_checkpoint":
            continue
        neutral = {"CLIP_stop_at_last_layers": (1,), "sd_vae": ("Automatic", "None", ""),
                   "forge_additional_modules": ([],)}.get(key, ())
        if value not in neutral:
            notes.append(f"override_settings.{key[:40]} was not used: only sd_model_checkpoint is applied here")
    if _EXTRA_NETWORK.search(body.prompt) or _EXTRA_NETWORK.search(body.negative_prompt):
        notes.append("extra networks (<lora:…>, <hypernet:…>) are not supported: their tags stayed in the prompt "
                     "as text")
    if isinstance(body, Img2ImgRequest):
        if body.resize_mode != 0:
            notes.append(f"resize_mode {body.resize_mode} was not used: the input is resized to width×height "
                         f"(\"Just resize\")")
        if body.mask is not None:
            blur = (body.mask_blur, body.mask_blur) if body.mask_blur is not None else (body.mask_blur_x,
                                                                                       body.mask_blur_y)
            if blur not in ((4, 4), (0, 0)):
                notes.append("mask_blur was not used: the mask is applied as drawn")
            if body.inpainting_fill in (2, 3):
                notes.append(f"inpainting_fill {body.inpainting_fill} was not used: the masked area starts from the "
                             f"original image")
        if body.initial_noise_multiplier not in (None, 1.0):
            notes.append("initial_noise_multiplier was not used")
    return notes


# -- models -----------------------------------------------------------------------------------------------

def model_hash(slug: str) -> str:
    """A stable stand-in for A1111's checkpoint hash: of the catalog slug (the server has no single weights file)."""
    return hashlib.sha256(f"image-studio:{slug}".encode()).hexdigest()


def model_title(slug: str) -> str:
    """A1111's checkpoint title: "name [short hash]"."""
    return f"{slug} [{model_hash(slug)[:10]}]"


def _checkpoint_names(engine: ImageEngine) -> list[str]:
    """Every name a checkpoint field may give: catalog slugs, then model aliases that are not slugs."""
    slugs = [spec.slug for spec in engine.catalog.all()]
    return slugs + sorted(set(engine.model_aliases()) - set(slugs))


def resolve_checkpoint(engine: ImageEngine, name: str, field: str) -> str:
    """The catalog slug or alias that an A1111 checkpoint name means: a slug or alias, a title ("slug [hash]"),
    a file name ("slug.safetensors"), or a hash; case does not matter."""
    wanted = name.strip()
    titled = _TITLE_HASH.match(wanted)
    wanted = (titled[1] if titled else wanted).replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in _WEIGHT_SUFFIXES:
        wanted = wanted.removesuffix(suffix)
    names = _checkpoint_names(engine)
    by_hash = len(wanted) >= 8 and all(c in "0123456789abcdef" for c in wanted.lower())
    for known in names:
        if known.lower() == wanted.lower() or (by_hash and model_hash(known).startswith(wanted.lower())):
            return known
    raise ModelNotFound(f"unknown model '{name[:100]}'; GET /sdapi/v1/sd-models lists this server's models: "
                        f"{', '.join(names)}", field=field)


def _chosen_checkpoint(user: User) -> str | None:
    return (user.preferences or {}).get(CHECKPOINT_PREFERENCE)


# -- planning ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Plan:
    items: list[ResolvedParams]  # one per image, each with its own seed
    choice: SamplerChoice | None
    cost: int  # credits per image
    batch_size: int
    subseed: int
    warnings: tuple[str, ...]


def _plan(engine: ImageEngine, account: Account, body: _A1111Request) -> _Plan:
    """Validated parameters for each image and their price (blocking: the catalog and settings are read)."""
    refused = _refusals(body)
    if refused:
        raise RequestValidationError(refused)
    batch_size = body.batch_size
    if isinstance(body, Img2ImgRequest) and len(body.init_images) > 1:
        if len(body.init_images) > batch_size:  # A1111's rule: one image per batch item
            raise InvalidRequest(f"Too many images passed: {len(body.init_images)}; expecting {batch_size} or less",
                                 field="init_images")
        batch_size = len(body.init_images)
    count = batch_size * body.n_iter
    limit = min(account.plan.max_batch_size, engine.runtime.get("max_batch_size"))
    if count > limit:
        raise InvalidRequest(f"batch_size × n_iter is {count} images; the {account.plan.name} plan allows {limit} "
                             f"per request", field="batch_size")
    checkpoint = body.override_settings.get("sd_model_checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise InvalidRequest("override_settings.sd_model_checkpoint must be a string",
                             field="override_settings.sd_model_checkpoint")
    if checkpoint:
        slug = resolve_checkpoint(engine, checkpoint, "override_settings.sd_model_checkpoint")
    else:
        slug = _chosen_checkpoint(account.user)
    spec = engine.resolve_model(slug)[0]
    base_seed = secrets.randbelow(MAX_SEED + 1) if body.seed == -1 else body.seed
    fields = {"prompt": body.prompt, "negative_prompt": body.negative_prompt or None, "model": slug,
              "width": body.width or spec.native_size, "height": body.height or spec.native_size,
              "num_inference_steps": body.steps, "guidance_scale": body.cfg_scale, "seed": base_seed}
    # Built without GenerationParams' own limits (2000-character prompts); check_inputs validates the rest.
    resolved = engine.prepare(GenerationParams.model_construct(**GenerationParams(prompt="x").model_dump() | fields))
    runs = engine.catalog.get(resolved.model)
    choice, sampler_notes = choose_sampler(runs, body.sampler_name or body.sampler_index, body.scheduler)
    notes = tuple(_warnings(body, choice)) + sampler_notes
    if isinstance(body, Img2ImgRequest) and "denoising_strength" in body.model_fields_set \
            and not runs.edit_uses_strength:
        notes += (f"denoising_strength was not used: {runs.name} edits by reference, without a strength",)
    resolved = replace_sampler(resolved, choice, notes)
    items = [dataclasses.replace(resolved, seed=(base_seed + i) % (MAX_SEED + 1)) for i in range(count)]
    subseed = secrets.randbelow(MAX_SEED + 1) if body.subseed == -1 else body.subseed
    return _Plan(items=items, choice=choice, cost=engine.credits_for(resolved),
                 batch_size=batch_size, subseed=subseed, warnings=resolved.warnings)


# -- input images -----------------------------------------------------------------------------------------

def _decode(value: str, field: str) -> Image.Image:
    """A base64 image (raw, or a data: URL), under the same size and pixel limits as every input image. URLs are
    not fetched here."""
    if value.lstrip()[:8].lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{field} must be a base64 image (with or without a data: prefix); URLs are not "
                             f"fetched", field=field)
    return parse_image_input(value, InputLimits(), field=field)


def _mask(body: Img2ImgRequest) -> Image.Image | None:
    """The inpainting mask as A1111 reads it: white is repainted; a transparent image's alpha is the mask; with
    ``inpainting_mask_invert`` black is repainted."""
    if body.mask is None:
        return None
    image = _decode(body.mask, "mask")
    if image.mode == "RGBA" and image.getextrema()[3] != (255, 255):
        mask = image.getchannel("A").point(lambda v: 255 if v > 128 else 0)
    else:
        mask = image.convert("L")
    return ImageOps.invert(mask) if body.inpainting_mask_invert else mask


def _inputs(body: Img2ImgRequest) -> tuple[list[Image.Image], Image.Image | None]:
    images = [_decode(value, f"init_images.{index}") for index, value in enumerate(body.init_images)]
    return images, _mask(body)


# -- answers ----------------------------------------------------------------------------------------------

def _quote(value: Any) -> str:
    """An infotext value, JSON-quoted when it holds a separator (as A1111 writes them)."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def _infotext(params: ResolvedParams, plan: _Plan, denoising: float | None) -> str:
    fields = {"Steps": params.steps, "Sampler": plan.choice.sampler.name if plan.choice else None,
              "Schedule type": plan.choice.schedule.label if plan.choice else None,
              "CFG scale": f"{params.guidance_scale:g}", "Seed": params.seed, "Size": f"{params.width}x{params.height}",
              "Model hash": model_hash(params.model)[:10], "Model": params.model, "Denoising strength": denoising,
              "Version": f"image-studio {__version__}"}
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None)
    negative = f"\nNegative prompt: {params.negative_prompt}" if params.negative_prompt else ""
    return f"{params.prompt}{negative}\n{line}".strip()


def _info(plan: _Plan, results: list[GenerationResult], body: _A1111Request, started: datetime, *,
          interrupted: int, storage: dict, credits_used: int) -> dict:
    """A1111's ``info`` (Processed.js()), describing what ran, with our additions beside its keys."""
    first = results[0].params if results else plan.items[0]
    denoising = body.denoising_strength if isinstance(body, Img2ImgRequest) else None
    seeds = [params.seed for params in plan.items]
    warnings = list(plan.warnings)
    if interrupted:
        warnings.append(f"interrupted: {interrupted} of {len(plan.items)} images were cancelled (not charged)")
    return {
        "prompt": first.prompt, "all_prompts": [p.prompt for p in plan.items],
        "negative_prompt": first.negative_prompt or "",
        "all_negative_prompts": [p.negative_prompt or "" for p in plan.items],
        "seed": seeds[0], "all_seeds": seeds,
        "subseed": plan.subseed, "all_subseeds": [(plan.subseed + i) % (MAX_SEED + 1) for i in range(len(seeds))],
        "subseed_strength": 0, "width": first.width, "height": first.height,
        "sampler_name": plan.choice.sampler.name if plan.choice else None,
        "cfg_scale": first.guidance_scale, "steps": first.steps, "batch_size": plan.batch_size,
        "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": first.model, "sd_model_hash": model_hash(first.model)[:10],
        "sd_vae_name": None, "sd_vae_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": denoising,
        "extra_generation_params": {"Schedule type": plan.choice.schedule.label} if plan.choice else {},
        "index_of_first_image": 0,
        "infotexts": [_infotext(result.params, plan, denoising) for result in results],
        "styles": [], "job_timestamp": started.strftime("%Y%m%d%H%M%S"), "clip_skip": 1,
        "is_using_inpainting_conditioning": False, "version": f"image-studio {__version__}",
        # Ours, beside A1111's keys.
        "scheduler": plan.choice.schedule.name if plan.choice else None,
        "model": first.model, "image_ids": [result.image_id for result in results],
        "job_ids": [result.job_id for result in results], "stored": storage["store"],
        "credits_used": credits_used, "interrupted": bool(interrupted), "warnings": warnings,
        "request_id": current_request_id(),
    }


# -- txt2img, img2img -------------------------------------------------------------------------------------

@router.post("/txt2img", summary="Text to image (A1111)")
async def txt2img(request: Request, body: Txt2ImgRequest, account: AccountDep, engine: EngineDep):
    """`batch_size × n_iter` images from a prompt, each with its own seed (seed, seed+1, …)."""
    async def produce():
        return await _generate(request, body, account, engine)

    return await idempotent(request, engine, account.user, produce)


@router.post("/img2img", summary="Image to image and inpainting (A1111)")
async def img2img(request: Request, body: Img2ImgRequest, account: AccountDep, engine: EngineDep):
    """Edit `init_images` at `denoising_strength`; with a `mask`, only its white area is repainted."""
    async def produce():
        return await _generate(request, body, account, engine)

    return await idempotent(request, engine, account.user, produce)


def _submit_all(engine: ImageEngine, user: User, plan: _Plan, body: _A1111Request,
                inputs: tuple[list[Image.Image], Image.Image | None] | None, store: bool,
                charge_id: str) -> list[Task]:
    """Queue every image of the request at once (one trip off the event loop, so the worker finds them together
    and batches them); if one can't be queued (the queue is full), none of them runs."""
    tasks = []
    try:
        for index, params in enumerate(plan.items):
            edit: dict = {}
            if inputs is not None:
                images, mask = inputs
                edit = {"kind": "edit", "init_image": images[index % plan.batch_size % len(images)],
                        "strength": body.denoising_strength, "mask": mask}
            tasks.append(engine.submit_generation(user, params, store=store, charge_id=charge_id, cost=plan.cost,
                                                  **edit))
    except EngineError:
        for task in tasks:
            engine.cancel_job(task.id)
        raise
    return tasks


async def _generate(request: Request, body: _A1111Request, account: Account, engine: ImageEngine):
    started = datetime.now()  # A1111's job_timestamp is the server's local time
    plan = await asyncio.to_thread(_plan, engine, account, body)
    storage = await asyncio.to_thread(engine.storage_for, account.user)
    count = len(plan.items)

    async def work(admission: Admission):
        # Admitted first, decoded after: a caller over its limits costs no decoding.
        inputs = (await asyncio.to_thread(_inputs, body)) if isinstance(body, Img2ImgRequest) else None
        tasks = await asyncio.to_thread(_submit_all, engine, account.user, plan, body, inputs, storage["store"],
                                        admission.charge_id)
        futures = await wait_for_client(request, engine, tasks)
        results: list[GenerationResult] = []
        interrupted, failure = 0, None
        for future in futures:
            try:
                results.append(future.result())
            except JobCancelled:  # /interrupt or /skip: the others still answer, as in A1111
                interrupted += 1
            except EngineError as exc:
                failure = failure or exc
        for _ in results:
            admission.succeeded(images=1, credits=plan.cost)
        if failure is not None:  # a failed image fails the request (what was delivered stays charged)
            raise failure
        info = _info(plan, results, body, started, interrupted=interrupted, storage=storage,
                     credits_used=plan.cost * len(results))
        encoded = [base64.b64encode(result.png).decode() for result in results] if body.send_images else []
        return FastJSONResponse({"images": encoded, "parameters": body.known(), "info": json.dumps(info)})

    return await metered(request, engine, account.workspace.id, requests=count, credits=plan.cost * count, work=work)


# -- progress, interrupt, skip ----------------------------------------------------------------------------

def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _idle_state() -> dict:
    return {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
            "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}


@router.get("/progress", summary="Progress of the caller's generations (A1111)")
def progress(user: CurrentUser, engine: EngineDep, skip_current_image: bool = False):
    """The caller's own queued and running generations (never another user's): `progress` 0..1 over them,
    the running job's step, and its latest preview as a base64 PNG where the model gives one."""
    jobs = active_jobs(engine, user.id)
    if not jobs:
        return FastJSONResponse({"progress": 0.0, "eta_relative": 0.0, "state": _idle_state(), "current_image": None,
                                 "textinfo": None})
    running = [job for job in jobs if job.status == "running"]
    done = sum(min(1.0, job.step / job.total) for job in running if job.total)
    fraction = min(1.0, 0.01 + done / len(jobs))  # A1111 starts at 0.01 once there is work
    start = min(_aware(job.started_at or job.created_at) for job in jobs)
    elapsed = max(0.0, (datetime.now(UTC) - start).total_seconds())
    current = running[0] if running else jobs[0]
    image = None
    if not skip_current_image and current.preview is not None:
        preview = current.preview()
        image = base64.b64encode(preview).decode() if preview else None
    state = _idle_state() | {"job": current.job_id, "job_count": len(jobs),
                             "job_timestamp": start.astimezone().strftime("%Y%m%d%H%M%S"),
                             "sampling_step": current.step, "sampling_steps": current.total}
    queued = len(jobs) - len(running)
    return FastJSONResponse({"progress": fraction, "eta_relative": elapsed / fraction - elapsed, "state": state,
                             "current_image": image, "textinfo": f"{len(running)} running, {queued} queued"})


@router.post("/interrupt", summary="Stop the caller's generations (A1111)")
def interrupt(user: CurrentUser, engine: EngineDep):
    """Cancel the caller's queued and running generations (nobody else's). A running one stops at its next step;
    the request that waits for them answers with the images that were done. Nothing cancelled is charged."""
    return FastJSONResponse({"cancelled": cancel_active(engine, user.id)})


@router.post("/skip", summary="Skip the caller's running generation (A1111)")
def skip(user: CurrentUser, engine: EngineDep):
    """Cancel the caller's running generations only; queued ones (the next images of a batch) go on."""
    return FastJSONResponse({"cancelled": cancel_active(engine, user.id, running_only=True)})


# -- models, samplers, options ----------------------------------------------------------------------------

@router.get("/sd-models", summary="Models as A1111 checkpoints")
def sd_models(user: CurrentUser, engine: EngineDep):
    """Every model of the catalog (and model alias), those that can run here first."""
    entries = []
    for name in _checkpoint_names(engine):
        try:
            available = model_info(engine, engine.catalog.get(name)).available
        except ModelNotFound:  # an alias that is not a catalog slug: it names a model that runs here
            available = True
        digest = model_hash(name)
        entries.append((not available, {"title": model_title(name), "model_name": name, "hash": digest[:10],
                                        "sha256": digest, "filename": name, "config": None}))
    return FastJSONResponse([entry for _, entry in sorted(entries, key=lambda pair: pair[0])])


@router.get("/samplers", summary="Samplers (A1111)")
def samplers(user: CurrentUser):
    """A1111's samplers that this server runs (on SD and SDXL models), with the diffusers scheduler of each."""
    return FastJSONResponse([{"name": s.name, "aliases": list(s.aliases), "options": s.a1111_options()}
                             for s in SAMPLERS])


@router.get("/schedulers", summary="Noise schedules (A1111)")
def schedulers(user: CurrentUser):
    return FastJSONResponse([{"name": s.name, "label": s.label, "aliases": None, "default_rho": -1.0,
                              "need_inner_model": False} for s in SCHEDULES])


def _options(engine: ImageEngine, user: User) -> dict:
    name = _chosen_checkpoint(user) or engine.default_model()
    return {"sd_model_checkpoint": model_title(name), "sd_checkpoint_hash": model_hash(name),
            "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1, "samples_format": "png"}


@router.get("/options", summary="Options (A1111)")
def get_options(user: CurrentUser, engine: EngineDep):
    """`sd_model_checkpoint`: the caller's model for this API (POST /options sets it), else the server's default."""
    return FastJSONResponse(_options(engine, user))


@router.post("/options", summary="Set options (A1111)")
def set_options(user: CurrentUser, engine: EngineDep, body: Annotated[dict[str, Any], Body()]):
    """Set `sd_model_checkpoint`: the caller's default model for `/sdapi` requests, kept with the account (every
    server process sees it). Other options are read-only: sent back unchanged they are accepted (clients post
    back what GET gave them), changed they are a 422."""
    current = _options(engine, user)
    refused = [{"loc": ("body", key[:64]), "msg": "this option cannot be set on this server (only "
                                                  "sd_model_checkpoint can)", "type": "unsupported"}
               for key, value in body.items()
               if key not in ("sd_model_checkpoint", "sd_checkpoint_hash") and current.get(key, object()) != value]
    if refused:
        raise RequestValidationError(refused)
    checkpoint = body.get("sd_model_checkpoint")
    if checkpoint is not None:
        if not isinstance(checkpoint, str):
            raise InvalidRequest("sd_model_checkpoint must be a string", field="sd_model_checkpoint")
        name = resolve_checkpoint(engine, checkpoint, "sd_model_checkpoint")
        engine.resolve_model(name)  # a model that can't run here is refused now, not at the next generation
        engine.accounts.set_preferences(user.id, **{CHECKPOINT_PREFERENCE: name})
    return FastJSONResponse(None)


# Lists clients read at start-up (webuiapi: /scripts; SillyTavern: /sd-vae, /upscalers, /latent-upscale-modes):
# this server has none of these, and says so rather than answering 404.
@router.get("/sd-vae", summary="VAEs (none here)")
@router.get("/upscalers", summary="Upscalers (none here)")
@router.get("/latent-upscale-modes", summary="Latent upscale modes (none here)")
@router.get("/loras", summary="LoRAs (none here)")
def empty_list(user: CurrentUser):
    return FastJSONResponse([])


@router.get("/scripts", summary="Scripts (none here)")
def scripts(user: CurrentUser):
    return FastJSONResponse({"txt2img": [], "img2img": []})
