"""Prompt templates and defaults for the product-shot and logo variants of generate."""

from __future__ import annotations

from dataclasses import dataclass

from engine.generation.catalog import ModelSpec
from engine.generation.params import GenerationParams


@dataclass(frozen=True)
class Variant:
    name: str
    template: str  # {prompt} is the caller's text
    negative_prompt: str


VARIANTS: dict[str, Variant] = {
    "product": Variant(
        name="product",
        template="{prompt}, professional product photography, centered hero shot on a clean seamless studio "
                 "background, softbox lighting with gentle reflections, crisp focus, high detail, commercial "
                 "catalog quality",
        negative_prompt="blurry, low resolution, watermark, text, logo, cluttered background, distorted, "
                        "deformed product, harsh shadows",
    ),
    "logo": Variant(
        name="logo",
        template="minimalist vector logo of {prompt}, flat design, simple bold shapes, clean lines, balanced "
                 "negative space, centered emblem on a plain white background, limited color palette, "
                 "scalable brand mark",
        negative_prompt="photo, photorealistic, 3d render, gradient noise, busy details, blurry, watermark, "
                        "mockup, multiple logos",
    ),
}


def apply_variant(params: GenerationParams, variant: Variant, spec: ModelSpec) -> GenerationParams:
    """The variant's template around the prompt; its negative prompt only where the model has plain negative
    conditioning (SD, SDXL). On FLUX.1 a negative prompt costs a second pass (true CFG) and FLUX.2 has none:
    there only a caller's own negative prompt is used (or, on FLUX.2, reported as unused)."""
    prompt = variant.template.format(prompt=params.prompt.strip())[:2000]
    plain_negative = spec.supports_negative and not spec.true_cfg_scale
    negative = params.negative_prompt or (variant.negative_prompt if plain_negative else None)
    return params.model_copy(update={"prompt": prompt, "negative_prompt": negative})
