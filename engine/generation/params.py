"""Generation requests: validation (``check_inputs``), the pipeline call, PNG encoding."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated

import numpy as np
import torch
from PIL import Image
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from engine.errors import InvalidRequest, JobCancelled, ModelUnavailable
from engine.generation import png
from engine.generation.catalog import UPSCALER_FACTOR, ModelSpec
from engine.generation.samplers import with_sampler

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000  # /generate's limit (the seed document's)
MAX_STEPS = 50


def refuse_nul(value: str | None) -> str | None:
    """Text with a NUL character can't be stored (PostgreSQL refuses it) and is never meant: a 422."""
    if value is not None and "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain a NUL character (\\u0000)")
    return value


# Text that is stored: a NUL character in it is refused with a clear 422 rather than failing in the database.
StoredText = Annotated[str, AfterValidator(refuse_nul)]
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 256, 1024, 512


class GenerationParams(BaseModel):
    """What a caller asks for. Omitted steps/guidance/seed take the model's defaults or a random seed.

    ``num_inference_steps`` is the seed API's name for the step count; ``steps`` is accepted as an alias.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prompt: StoredText = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: StoredText | None = Field(default=None, max_length=1000)
    model: StoredText | None = Field(default=None, max_length=64)
    width: int = Field(default=DEFAULT_SIZE, ge=MIN_SIZE, le=MAX_SIZE)
    height: int = Field(default=DEFAULT_SIZE, ge=MIN_SIZE, le=MAX_SIZE)
    num_inference_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS,
                                            description="Denoising steps; omitted: the model's default")
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS, description="Alias of `num_inference_steps`")
    guidance_scale: float | None = Field(default=None, ge=0, le=30)
    true_cfg_scale: float | None = Field(
        default=None, ge=1, le=30,
        description="FLUX.1 only: the scale of true classifier-free guidance used for a `negative_prompt`")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)

    @field_validator("steps")
    @classmethod
    def _steps_agree(cls, steps: int | None, info: ValidationInfo) -> int | None:
        given = info.data.get("num_inference_steps")
        if steps is not None and given is not None and steps != given:
            raise PydanticCustomError(
                "steps_conflict", "num_inference_steps ({given}) and steps ({steps}) differ: send one of them "
                "(steps is an alias of num_inference_steps)", {"given": given, "steps": steps})
        return steps

    @property
    def step_count(self) -> int | None:
        return self.num_inference_steps if self.num_inference_steps is not None else self.steps


ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")


def size_for_aspect(spec: ModelSpec, aspect_ratio: str) -> tuple[int, int]:
    """Width and height with the model's native area in the given ratio, fitted to its limits."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise InvalidRequest(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}", field="aspect_ratio")
    rw, rh = (int(part) for part in aspect_ratio.split(":"))
    return size_like(spec, rw, rh)


def size_like(spec: ModelSpec, width: int, height: int) -> tuple[int, int]:
    """A size in the shape width:height with the model's native area, scaled up if the short side is under
    the model's minimum and down if the long side is over its maximum (the shape wins over the area)."""
    scale = spec.native_size / max(1.0, (width * height) ** 0.5)
    scale = max(scale, spec.min_size / min(width, height))
    scale = min(scale, spec.max_size / max(width, height))
    return _round_size(int(width * scale + 0.5), spec), _round_size(int(height * scale + 0.5), spec)


@dataclass(frozen=True)
class ResolvedParams:
    """Validated parameters with every default filled in: exactly what the pipeline runs."""

    prompt: str
    negative_prompt: str | None
    model: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    true_cfg_scale: float | None = None  # FLUX.1 with a negative prompt: true classifier-free guidance
    requested_model: str | None = None  # the slug asked for, when a model alias ran another model
    # A sampler other than the model's own scheduler, by its A1111 names (engine/generation/samplers.py): the
    # sampler ("DPM++ 2M") and its noise schedule ("karras"). None: the pipeline's own scheduler.
    sampler: str | None = None
    scheduler: str | None = None
    # What the request asked for that this model cannot do as asked (told to the caller, never dropped silently).
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one batched pipeline call."""
        return (self.model, self.width, self.height, self.steps, self.guidance_scale, self.true_cfg_scale,
                self.sampler, self.scheduler)

    def as_dict(self) -> dict:
        """The parameters as recorded (PNG text chunks, job rows); optional ones only when set."""
        values = asdict(self)
        del values["warnings"]
        for optional in ("true_cfg_scale", "requested_model", "sampler", "scheduler"):
            if values[optional] is None:
                del values[optional]
        return values


def _round_size(value: int, spec: ModelSpec) -> int:
    multiple = spec.size_multiple
    rounded = (value + multiple // 2) // multiple * multiple  # half rounds up
    low = -(-spec.min_size // multiple) * multiple
    high = spec.max_size // multiple * multiple
    return max(low, min(high, rounded))


def check_inputs(params: GenerationParams, spec: ModelSpec) -> ResolvedParams:
    """Fill defaults and fit the request to the model; raise clear errors for what can't run, and warn about
    what the model takes differently from how it was asked (rounded sizes, unused settings)."""
    if not spec.open_weights and spec.provider is None:
        raise ModelUnavailable(f"'{spec.slug}' is a {spec.unavailable_reason}")
    if not spec.text_to_image:
        raise InvalidRequest(f"'{spec.slug}' ({spec.name}) is an {spec.task} model, not a text-to-image one: "
                             f"choose a model from /models", field="model")
    prompt = params.prompt.strip()
    if not prompt:
        raise InvalidRequest("prompt must not be blank", field="prompt")
    warnings: list[str] = []
    negative = (params.negative_prompt or "").strip() or None
    true_cfg = None
    if negative and spec.true_cfg_scale:
        true_cfg = float(params.true_cfg_scale or spec.true_cfg_scale)
    elif negative and not spec.supports_negative:
        warnings.append(f"negative_prompt was not used: {spec.name} has no negative conditioning")
        negative = None
    if params.true_cfg_scale is not None and true_cfg is None:
        warnings.append("true_cfg_scale was not used: it applies to FLUX.1 models with a negative_prompt")
    if params.guidance_scale is not None and not spec.uses_guidance:
        warnings.append(f"guidance_scale was not used: {spec.name} is guidance-distilled")
    width, height = _round_size(params.width, spec), _round_size(params.height, spec)
    for name, asked, got in (("width", params.width, width), ("height", params.height, height)):
        if asked != got:
            warnings.append(f"{name} {asked} was rounded to {got}: {spec.name} takes multiples of "
                            f"{spec.size_multiple} from {spec.min_size} to {spec.max_size}")
    return ResolvedParams(
        prompt=prompt,
        negative_prompt=negative,
        model=spec.slug,
        width=width,
        height=height,
        steps=params.step_count or spec.default_steps,
        guidance_scale=spec.default_guidance if params.guidance_scale is None else float(params.guidance_scale),
        seed=secrets.randbelow(MAX_SEED + 1) if params.seed is None else params.seed,
        true_cfg_scale=true_cfg,
        warnings=tuple(warnings),
    )


StepCallback = Callable[[int, int], bool]  # (step done, total) -> keep going?
LatentsCallback = Callable[[int, torch.Tensor], None]  # (step done, latents of the whole batch)

# Linear maps from 4-channel SD/SDXL latents to RGB: a preview for free, without running the VAE.
_LATENT_RGB = {
    "sd": (((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473)),
           (0.0, 0.0, 0.0)),
    "sdxl": (((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
              (-0.3165, -0.2492, -0.2188)), (0.1084, -0.0175, -0.0011)),
}


def supports_preview(spec: ModelSpec) -> bool:
    return spec.family in _LATENT_RGB


def latent_preview(latents: torch.Tensor, spec: ModelSpec) -> bytes:
    """A small PNG of one image's latents (shape 4×h×w), approximated without the VAE.

    The arithmetic is numpy's, not torch's: this runs on whichever thread asks, and torch work on a
    second CPU thread starts a second OpenMP pool that slows the worker's generations by a third on a
    small CPU. (From a GPU tensor, the copy to the host is the only torch work.)
    """
    factors, bias = _LATENT_RGB[spec.family]
    array = latents.detach().float().cpu().numpy()
    rgb = np.einsum("chw,cr->hwr", array, np.asarray(factors, np.float32)) + np.asarray(bias, np.float32)
    pixels = ((np.clip(rgb, -1, 1) + 1) * 127.5).astype(np.uint8)
    return png.encode(Image.fromarray(pixels))


def check_edit_inputs(spec: ModelSpec, init_images: list[Image.Image] | None, mask: Image.Image | None) -> None:
    """Refuse an edit the model would not do as asked, before it is queued or charged."""
    if mask is not None and not init_images:
        raise InvalidRequest("a mask needs an image to inpaint", field="mask")
    if not init_images:
        return
    if spec.edit_pipeline_class is None:
        raise InvalidRequest(f"model '{spec.slug}' cannot edit images", field="model")
    if mask is not None and spec.inpaint_pipeline_class is None:
        raise InvalidRequest(f"model '{spec.slug}' ({spec.name}) has no inpainting pipeline; edit without a mask "
                             f"or choose an SD, SDXL or FLUX.1 model", field="mask")
    if len(init_images) > 1 and (mask is not None or not spec.multi_reference):
        raise InvalidRequest(f"model '{spec.slug}' edits one image at a time (several reference images need a "
                             f"FLUX.2 model, without a mask); {len(init_images)} were sent", field="image")


UPSCALE_STRENGTH = 0.35  # a hires-fix pass: new detail at the new size, the picture itself kept


def upscaled(params: ResolvedParams, spec: ModelSpec, factor: float) -> ResolvedParams:
    """The parameters of an upscale ("hires fix") of an image made with ``params``: the same prompt, model and seed
    at ``factor`` times the size, fitted to the model's limits and multiples (refused when it can't grow)."""
    if not 1 < factor <= 4:
        raise InvalidRequest("the upscale factor is more than 1 and at most 4", field="factor")
    scale = min(factor, spec.max_size / max(params.width, params.height))
    width, height = _round_size(int(params.width * scale), spec), _round_size(int(params.height * scale), spec)
    if width <= params.width and height <= params.height:
        raise InvalidRequest(f"{params.width}×{params.height} is already the largest size {spec.name} makes "
                             f"({spec.max_size} px)", field="factor")
    return dataclasses.replace(params, width=width, height=height, warnings=())


def upscaled_x4(params: ResolvedParams, upscaler: ModelSpec) -> ResolvedParams:
    """The parameters of a pass of the x4 ``upscaler`` over an image made with ``params``: the same prompt and
    seed, the upscaler's steps and guidance, four times the size (refused past the upscaler's largest output)."""
    width, height = params.width * UPSCALER_FACTOR, params.height * UPSCALER_FACTOR
    if max(width, height) > upscaler.max_size:
        raise InvalidRequest(f"{upscaler.name} takes images up to {upscaler.max_size // UPSCALER_FACTOR} px and "
                             f"this one is {params.width}×{params.height}; upscale it ×2 instead", field="image")
    width, height = _round_size(width, upscaler), _round_size(height, upscaler)
    return ResolvedParams(prompt=params.prompt, negative_prompt=params.negative_prompt, model=upscaler.slug,
                          width=width, height=height, steps=upscaler.default_steps,
                          guidance_scale=upscaler.default_guidance, seed=params.seed)


def upscale_input(image: Image.Image, params: ResolvedParams) -> Image.Image:
    """The picture at the upscaled size, resized with Lanczos: what the hires-fix pass starts from."""
    return image.convert("RGB").resize((params.width, params.height), Image.Resampling.LANCZOS)


def steps_for_edit(steps: int, strength: float) -> int:
    """Image-to-image runs only the last ``int(steps × strength)`` steps; the fewest steps, from ``steps`` up,
    that leave at least one (steps 1 at strength 0.5 would denoise nothing and crash the pipeline)."""
    needed = steps
    while int(needed * strength) < 1:
        needed += 1
    return needed


def run_pipeline(pipe, spec: ModelSpec, batch: list[ResolvedParams], on_step: StepCallback | None = None,
                 init_images: list[Image.Image] | None = None, strength: float = 0.6,
                 on_latents: LatentsCallback | None = None, mask: Image.Image | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[Image.Image]:
    """One pipeline call for one or more compatible requests, each with its own seed.

    ``init_images``: an edit (one image per request, or FLUX.2's reference images); with ``mask`` (white is
    repainted, black kept) on an inpaint pipeline. ``should_stop``: true once nobody wants the result any more;
    checked before each block of the denoiser, so a cancel ends even a long step within a fraction of it
    (JobCancelled). Noise comes from CPU generators, so a seed gives the same picture on any device.
    """
    first = batch[0]
    assert all(p.batch_key() == first.batch_key() for p in batch), "batch mixes incompatible requests"
    if first.sampler is not None:  # this call's own scheduler, on a copy: the loaded pipeline keeps its own
        pipe = with_sampler(pipe, first.sampler, first.scheduler)
    kwargs: dict = dict(
        prompt=[p.prompt for p in batch],
        num_inference_steps=first.steps,
        guidance_scale=first.guidance_scale,
        generator=[torch.Generator("cpu").manual_seed(p.seed) for p in batch],
        output_type="pil",
    )
    if init_images is None:
        kwargs.update(width=first.width, height=first.height)
    elif spec.task == "upscale":  # the output is the input at four times the size
        kwargs["image"] = [im.convert("RGB").resize((first.width // UPSCALER_FACTOR, first.height // UPSCALER_FACTOR),
                                                     Image.Resampling.LANCZOS) for im in init_images]
    else:
        kwargs.update(image=[im.convert("RGB").resize((first.width, first.height)) for im in init_images])
        if mask is not None:
            kwargs.update(mask_image=mask.convert("L").resize((first.width, first.height)), strength=strength,
                          width=first.width, height=first.height)
        elif "strength" in _call_parameters(pipe):
            kwargs["strength"] = strength
        elif "width" in _call_parameters(pipe):
            kwargs.update(width=first.width, height=first.height)
    if first.true_cfg_scale:  # FLUX.1: the negative prompt works through true classifier-free guidance
        kwargs.update(negative_prompt=[p.negative_prompt or "" for p in batch], true_cfg_scale=first.true_cfg_scale)
    elif spec.supports_negative and not spec.true_cfg_scale:
        kwargs["negative_prompt"] = [p.negative_prompt or "" for p in batch]
    if spec.max_sequence_length and "max_sequence_length" in _call_parameters(pipe):
        kwargs["max_sequence_length"] = spec.max_sequence_length
    if on_step is not None or on_latents is not None:
        total = first.steps

        def callback(pipeline, step, _timestep, callback_kwargs):
            if on_latents is not None and "latents" in callback_kwargs:
                on_latents(step + 1, callback_kwargs["latents"])
            if on_step is not None and not on_step(step + 1, total):
                pipeline._interrupt = True
            return callback_kwargs

        if "callback_on_step_end" in _call_parameters(pipe):
            kwargs["callback_on_step_end"] = callback
        else:  # the x4 upscaler has only the older per-step callback; a cancel stops it through should_stop
            kwargs.update(callback=lambda step, timestep, latents: callback(pipe, step, timestep, {"latents": latents}),
                          callback_steps=1)
    with torch.inference_mode(), _stoppable(pipe, should_stop):
        images = list(pipe(**kwargs).images)
    if mask is not None:
        images = [keep_unmasked(image, source, mask) for image, source in zip(images, kwargs["image"], strict=True)]
    return images


MASK_FEATHER_PX = 2


def keep_unmasked(result: Image.Image, source: Image.Image, mask: Image.Image) -> Image.Image:
    """The inpainted picture with the source's own pixels wherever the mask is black, feathered over a few pixels
    at the mask's edge (as AUTOMATIC1111 and InvokeAI do): the latents' round trip through the VAE, and an
    inpainting UNet that redraws everything, would otherwise change what was meant to be kept."""
    from PIL import ImageFilter

    soft = mask.convert("L").resize(result.size).filter(ImageFilter.GaussianBlur(MASK_FEATHER_PX))
    return Image.composite(result.convert("RGB"), source.convert("RGB").resize(result.size), soft)


@contextlib.contextmanager
def _stoppable(pipe, should_stop: Callable[[], bool] | None):
    """For the length of one call, a check before each block of the pipeline's denoiser (UNet or transformer) that
    ends the call at once when ``should_stop()``. Only the calling thread is stopped: the worker runs one pipeline
    call at a time, and another thread sharing these modules (none today) would not be."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if should_stop is None or denoiser is None:
        yield
        return
    caller = threading.get_ident()

    def check(_module, _inputs):
        if threading.get_ident() == caller and should_stop():
            raise JobCancelled("the job was cancelled")

    blocks = [block for name in ("down_blocks", "mid_block", "up_blocks", "transformer_blocks",
                                 "single_transformer_blocks") for block in _as_list(getattr(denoiser, name, None))]
    handles = [block.register_forward_pre_hook(check) for block in blocks or list(denoiser.children())]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _as_list(blocks) -> list:
    if blocks is None:
        return []
    return list(blocks) if isinstance(blocks, torch.nn.ModuleList) else [blocks]


def _call_parameters(pipe) -> set[str]:
    import inspect

    return set(inspect.signature(pipe.__call__).parameters)


def encode_png(image: Image.Image, params: ResolvedParams, extra: dict | None = None) -> bytes:
    """PNG bytes with the generation parameters as text chunks (readable by common tools)."""
    meta = params.as_dict() | (extra or {})
    text = {key: str(value) for key, value in meta.items() if value is not None}
    text["imagestudio"] = json.dumps(meta, sort_keys=True)
    return png.encode(image, text)


def read_png_metadata(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as image:
        text = dict(getattr(image, "text", {}) or {})
    if "imagestudio" in text:
        return json.loads(text["imagestudio"])
    return text
