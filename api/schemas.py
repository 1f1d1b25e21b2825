"""Request and response bodies of the v1 API."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from engine.generation.params import GenerationParams, StoredText

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
    retry_after: int | None = None
    limit: str | None = Field(default=None, description="429 only: which limit: minute, day, month, concurrency "
                                                        "or prompt_tools")


class ErrorEnvelope(BaseModel):
    success: bool = False
    error: ErrorInfo
    retry_after: int | None = Field(default=None, description="429 only: seconds until a retry can succeed")
    request_id: str


class GenerateRequest(GenerationParams):
    """A single image (``prompt`` …) or a batch (``items``, each an object with the same fields;
    top-level fields act as defaults for every item)."""

    prompt: StoredText | None = Field(default=None, min_length=1, max_length=2000, examples=["a red fox in fresh snow"])
    model: StoredText | None = Field(default=None, max_length=64, examples=["flux-schnell"])
    items: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=100)
    run_async: bool = Field(default=False, alias="async",
                            description="Answer 202 with a job id at once (or send `Prefer: respond-async`)")
    callback_url: str | None = Field(default=None, max_length=2000,
                                     description="Async only: where the signed webhook goes when the job ends")

    # Unknown fields are refused (422), as in batch items: a typo like `negativePrompt` must not pass silently.
    # Strict types: "256" is not a width and "yes" is not a boolean (a client bug, reported, not guessed at).
    model_config = ConfigDict(populate_by_name=True, extra="forbid", str_strip_whitespace=True, strict=True)

    def item_defaults(self) -> dict[str, Any]:
        """The fields given at the top level, which every item inherits."""
        return self.model_dump(exclude={"items", "run_async", "callback_url"}, exclude_unset=True)


class StorageInfo(BaseModel):
    enabled: bool = Field(description="Storage is on for this account (admin setting and plan)")
    stored: bool = Field(description="This image was stored and `image_url` is a hosted link")
    plan: str = Field(description="The plan's storage in words, e.g. \"10 GB cloud storage\"")
    plan_slug: str | None = Field(default=None, description="The plan's slug")
    reason: str | None = Field(default=None, description="Why an image was not stored although storage is on")


class JobAccepted(BaseModel):
    job_id: str
    status: str
    status_url: str


class GenerationInfo(BaseModel):
    """The parameters an image was made with (shared by every image-bearing response)."""

    model: str = Field(description="The model that ran")
    requested_model: str | None = Field(default=None, description="The slug asked for, where a model alias ran "
                                                                   "another model")
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    num_inference_steps: int
    steps: int = Field(description="Same as `num_inference_steps`")
    guidance_scale: float
    true_cfg_scale: float | None = None
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
    warnings: list[str] = Field(default_factory=list, description="What the model could not do as asked (a "
                                                                  "rounded size, an unused negative prompt, …)")


class BatchSuccess(ImageData):
    """A batch item that ran: the seed API's flat shape (`success`, `image`, `seed`, `model`, `storage` …)."""

    index: int
    success: Literal[True] = True


class BatchFailure(BaseModel):
    """A batch item that did not run: `error` is the message, as in the seed API; the rest is ours."""

    index: int
    success: Literal[False] = False
    error: str = Field(description='"Rate limit exceeded", the credit message, or what was wrong with the item')
    error_code: str
    error_details: ErrorInfo


class BatchData(BaseModel):
    results: list[BatchSuccess | BatchFailure]
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
    alias_of: str | None = Field(default=None, description="The model that serves this slug here (a model alias)")
    provider: str | None = Field(default=None, description="The vendor API that serves this slug for this server "
                                                            "(bfl, leonardo), where the admin set one up")
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
