"""Credit costs. Generation is priced by model and size; background removal is flat; prompt tools are free."""

from __future__ import annotations

from engine.generation.catalog import ModelSpec

# slug -> (credits up to 512x512 pixels, credits above that, up to 1024x1024)
GENERATION_CREDITS: dict[str, tuple[int, int]] = {
    "flux-schnell": (1, 2),
    "flux-2-klein-4b": (1, 2),
    "flux-2-klein-9b": (2, 3),
    "flux-2-dev": (4, 6),
    "stable-diffusion": (2, 3),
    "sdxl-lightning": (1, 2),
    "dreamshaper-8-lcm": (1, 2),
    "tiny-sd": (1, 1),
    "tiny-sdxl": (1, 1),
    "tiny-flux": (1, 1),
}
CUSTOM_MODEL_CREDITS = (2, 3)
BACKGROUND_REMOVAL_CREDITS = 2
PROMPT_TOOL_CREDITS = 0
SMALL_PIXELS = 512 * 512


def generation_credits(spec: ModelSpec, width: int, height: int) -> int:
    small, large = GENERATION_CREDITS.get(spec.slug, CUSTOM_MODEL_CREDITS)
    return small if width * height <= SMALL_PIXELS else large
