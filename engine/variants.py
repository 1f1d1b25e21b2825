"""Prompt templates and defaults for the product-shot and logo variants of generate."""

from __future__ import annotations

from dataclasses import dataclass

from engine.generation import GenerationParams


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


def apply_variant(params: GenerationParams, variant: Variant) -> GenerationParams:
    prompt = variant.template.format(prompt=params.prompt.strip())[:2000]
    return params.model_copy(update={"prompt": prompt,
                                     "negative_prompt": params.negative_prompt or variant.negative_prompt})
