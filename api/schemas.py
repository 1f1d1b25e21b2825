"""Request and response bodies of the v1 API."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from engine.generation import DEFAULT_SIZE, MAX_SEED, MAX_SIZE, MIN_SIZE

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    success: bool = True
    data: T
    request_id: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorEnvelope(BaseModel):
    success: bool = False
    error: ErrorInfo
    request_id: str


class GenerateRequest(BaseModel):
    """A single image (``prompt`` …) or a batch (``items``, each an object with the same fields;
    top-level fields act as defaults for every item)."""

    prompt: str | None = Field(default=None, min_length=1, max_length=2000, examples=["a red fox in fresh snow"])
    negative_prompt: str | None = Field(default=None, max_length=1000)
    model: str | None = Field(default=None, max_length=64, examples=["flux-schnell"])
    width: int = Field(default=DEFAULT_SIZE, ge=MIN_SIZE, le=MAX_SIZE)
    height: int = Field(default=DEFAULT_SIZE, ge=MIN_SIZE, le=MAX_SIZE)
    steps: int | None = Field(default=None, ge=1, le=50)
    guidance_scale: float | None = Field(default=None, ge=0, le=30)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    items: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=100)
    run_async: bool = Field(default=False, alias="async",
                            description="Answer 202 with a job id at once (or send `Prefer: respond-async`)")

    # Unknown fields are refused (422), as in batch items: a typo like `negativePrompt` must not pass silently.
    model_config = ConfigDict(populate_by_name=True, extra="forbid", str_strip_whitespace=True)


class StorageInfo(BaseModel):
    enabled: bool = Field(description="Storage is on for this account (admin setting and plan)")
    stored: bool = Field(description="This image was stored and `image_url` is a hosted link")
    plan: str | None
    reason: str | None = Field(default=None, description="Why an image was not stored although storage is on")


class JobAccepted(BaseModel):
    job_id: str
    status: str
    status_url: str


class GenerationInfo(BaseModel):
    """The parameters an image was made with (shared by every image-bearing response)."""

    model: str
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    duration_ms: int


class ImageLinks(GenerationInfo):
    id: str
    job_id: str
    image: str = Field(description="The PNG: a data URL (data:image/png;base64,…), or its hosted URL when stored")
    image_url: str = Field(description="Same as `image`")
    format: str = "png"


class ImageData(ImageLinks):
    storage: StorageInfo
    variant: str = "generate"
    credits_used: int = 0


class BatchResult(BaseModel):
    index: int
    success: bool
    data: ImageData | None = None
    error: ErrorInfo | None = None


class BatchData(BaseModel):
    results: list[BatchResult]
    total: int
    succeeded: int
    failed: int


class ModelInfo(BaseModel):
    slug: str
    name: str
    description: str
    available: bool
    status: str = Field(description="loaded | ready | downloadable | unavailable")
    reason: str | None = None
    family: str
    default_steps: int
    default_guidance: float
    min_size: int
    max_size: int
    supports_negative_prompt: bool
    repo_id: str | None
    license: str
    default: bool = False


class HealthData(BaseModel):
    status: str
    version: str
    uptime_s: int
    checks: dict[str, dict[str, Any]]
