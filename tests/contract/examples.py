"""Every request example of the two seed documents (../shared/seeds/), as data: the bodies as written.

Only the base URL, the key and (where a document names one) the model are substituted by the tests:
the test server's default model is a tiny one, and ``flux-2-pro`` is aliased to a tiny model there.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    name: str  # where it is in the documents
    method: str
    path: str
    body: dict | None = None
    auth: bool = True
    # Documented response fields: dotted paths ("data.results.0.image") that must be present.
    fields: tuple[str, ...] = ()
    status: int = 200
    extra: dict = field(default_factory=dict)


STORAGE = ("storage.enabled", "storage.stored", "storage.plan")
IMAGE = ("data.image", "data.seed", "data.model", *(f"data.{f}" for f in STORAGE))
ITEM = tuple(f"data.results.{{i}}.{f}" for f in ("success", "image", "seed", "model", *STORAGE))

IMAGEAPI = (
    Example("quick start (curl)", "POST", "/api/v1/generate",
            {"prompt": "a sunset over mountains", "width": 512, "height": 512}, fields=IMAGE),
    Example("WordPress (PHP)", "POST", "/api/v1/generate",
            {"prompt": "cinematic mountain landscape at sunrise", "width": 512, "height": 512}, fields=IMAGE),
    Example("browser JavaScript", "POST", "/api/v1/generate",
            {"prompt": "a sunset over mountains", "width": 512, "height": 512}, fields=IMAGE),
    Example("request body table: num_inference_steps", "POST", "/api/v1/generate",
            {"prompt": "a sunset over mountains", "num_inference_steps": 3, "seed": 12345}, fields=IMAGE),
    Example("batch requests", "POST", "/api/v1/generate", {"items": [
        {"prompt": "a futuristic city at night", "width": 512, "height": 512},
        {"prompt": "a portrait photo, studio lighting", "width": 512, "height": 512},
    ]}, fields=("data.results",) + tuple(f.format(i=i) for i in (0, 1) for f in ITEM)),
    Example("example with negative_prompt", "POST", "/api/v1/generate", {
        "prompt": "a sunset over mountains", "negative_prompt": "blurry, low quality", "width": 512, "height": 512,
    }, fields=IMAGE),
    Example("product variant", "POST", "/api/v1/generate/product", {
        "prompt": "a sunset over mountains", "negative_prompt": "blurry, low quality", "width": 512, "height": 512,
    }, fields=IMAGE),
    Example("logo variant", "POST", "/api/v1/generate/logo", {
        "prompt": "a sunset over mountains", "negative_prompt": "blurry, low quality", "width": 512, "height": 512,
    }, fields=IMAGE),
    Example("prompt/enhance", "POST", "/api/v1/prompt/enhance", {"prompt": "robot reading a book",
                                                                 "tone": "anime, cozy"}, fields=("data.prompt",)),
    Example("prompt/build", "POST", "/api/v1/prompt/build", {
        "subject": "fox in a scarf", "setting": "snowy forest", "mood": "cozy", "art_style": "watercolor",
    }, fields=("data.prompt",)),
    Example("models (no auth)", "GET", "/api/v1/models", auth=False,
            fields=("data.0.slug", "data.0.name", "data.0.description")),
    Example("usage", "GET", "/api/v1/usage", fields=(
        "data.usage.today.requestCount", "data.usage.today.imageCount", "data.usage.this_month.requestCount",
        "data.usage.this_month.imageCount", "data.plan.name", "data.plan.slug", "data.plan.requests_per_month",
        "data.plan.requests_per_day", "data.plan.remaining_today", "data.plan.remaining_month")),
    Example("health", "GET", "/api/v1/health", auth=False, fields=("status",)),
)

IMAGE_STUDIO = (
    Example("fetch (JavaScript)", "POST", "/api/v1/image-studio", {
        "prompt": "A cyberpunk city with flying cars and neon signs", "model": "flux-2-pro", "aspect_ratio": "16:9",
    }, fields=("image_url",)),
    Example("requests (Python)", "POST", "/api/v1/image-studio", {
        "prompt": "A watercolor painting of Paris in autumn", "model": "flux-2-pro", "aspect_ratio": "4:3",
    }, fields=("image_url",)),
    Example("curl", "POST", "/api/v1/image-studio", {
        "prompt": "A minimalist Japanese garden at dawn", "model": "flux-2-pro", "aspect_ratio": "16:9",
    }, fields=("image_url",)),
    Example("enhance_prompt", "POST", "/api/v1/image-studio", {"action": "enhance_prompt",
                                                              "prompt": "a dog on a beach"}, fields=("data.prompt",)),
    Example("flux-2-klein-9b, the other documented model", "POST", "/api/v1/image-studio", {
        "prompt": "A minimalist Japanese garden at dawn", "model": "flux-2-klein-9b", "aspect_ratio": "16:9",
    }, fields=("image_url",)),
)

SEED_MODELS = ("flux-schnell", "flux-2-klein-9b", "flux-2-klein-4b", "flux-2-dev", "lucid-origin", "phoenix-1",
               "stable-diffusion", "sdxl-lightning", "dreamshaper-8-lcm")
