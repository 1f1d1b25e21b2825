"""Database tables. Families follow ``XBase`` / ``X(table=True)`` / ``XPublic``."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class Plan(SQLModel, table=True):
    slug: str = Field(primary_key=True)
    name: str
    requests_per_minute: int = 10
    requests_per_day: int = 50
    requests_per_month: int = 1500
    max_concurrent_jobs: int = 1
    max_batch_size: int = 4
    storage_enabled: bool = False
    storage_quota_mb: int = 0
    monthly_credits: int = 0
    price_usd_month: float = 0.0


class Workspace(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("ws"), primary_key=True)
    name: str
    plan_slug: str | None = Field(default="free", foreign_key="plan.slug")
    credits: int = 0
    credits_month: str | None = None  # the month the plan's monthly credits were last granted
    suspended: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class UserBase(SQLModel):
    email: str = Field(index=True, unique=True, max_length=320)
    name: str = ""
    is_admin: bool = False


class User(UserBase, table=True):
    id: str = Field(default_factory=lambda: new_id("usr"), primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    password_hash: str | None = None
    is_active: bool = True
    preferences: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    # Session tokens and studio sessions carry the version they were made at; raising it revokes them all.
    token_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class UserPublic(UserBase):
    id: str
    workspace_id: str
    created_at: datetime


class ApiKey(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    name: str = ""
    prefix: str = Field(index=True, unique=True)
    key_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    # Webhooks of this key's async requests: a default callback URL, and the signing secret (encrypted at rest
    # with a key derived from the server secret; shown to the user once).
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: str | None = None


class WebhookDelivery(SQLModel, table=True):
    """One webhook to deliver (a job ended), retried with backoff until it is accepted or a day has passed."""

    id: str = Field(default_factory=lambda: new_id("msg"), primary_key=True)  # the `webhook-id` header
    key_id: str = Field(foreign_key="apikey.id", index=True)
    user_id: str = Field(index=True)
    job_id: str = Field(index=True)
    url: str = Field(max_length=2000)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", index=True)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class ApiKeyPublic(SQLModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ImageRecord(SQLModel, table=True):
    """One generated image. ``file_path`` is set only once the file is safely on disk."""

    id: str = Field(default_factory=lambda: new_id("img"), primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    job_id: str | None = Field(default=None, index=True)
    model: str
    prompt: str
    negative_prompt: str | None = None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int = Field(sa_column=Column(BigInteger, nullable=False))  # seeds go up to 2**32 - 1: 64-bit
    kind: str = "generate"
    # An edit's context: how strongly it changed its source, and the source when that is an image of the gallery.
    strength: float | None = None
    source_image_id: str | None = Field(default=None, max_length=64)
    # The owner's own order: a star, and one board (a named collection) per image.
    favorite: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    board: str | None = Field(default=None, max_length=64, index=True)
    file_path: str | None = None
    bytes: int = 0
    duration_ms: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class Job(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("job"), primary_key=True)
    user_id: str | None = Field(default=None, foreign_key="user.id", index=True)
    kind: str = "generate"
    status: str = Field(default=JobStatus.QUEUED, index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    error: str | None = None
    image_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = Field(default=None, index=True)
    # The process that runs it and until when it vouches for it (engine/data/leases.py); null: no live owner.
    process_id: str | None = Field(default=None, index=True)
    lease_expires_at: datetime | None = None
    # Seen from any process: the running job's progress (written about once a second), and a cancel asked for
    # by a process other than the one that runs it (which picks it up at its next progress write or heartbeat).
    progress_step: int | None = None
    progress_total: int | None = None
    cancel_requested: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # An async job as plain data (engine/generation/resumable.py): what any process needs to run it again after
    # the one that accepted it died (its admission, storage choice, input images' references, webhook). Null: it
    # lives and dies with its process (a waiting caller, the studio).
    request: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # times it was queued again
    # The running job's latest preview (a small PNG of its latents, written with its progress), so that any
    # process can show it; cleared when the job ends.
    preview: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))


class CustomModel(SQLModel, table=True):
    """A model a user added: a local diffusers folder or a hub repository id."""

    slug: str = Field(primary_key=True)
    name: str
    source: str  # hub repo id or absolute folder path
    family: str = "sd"  # sd | sdxl | flux | flux2
    description: str = ""
    default_steps: int | None = None
    default_guidance: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class UsageCounter(SQLModel, table=True):
    """Requests, images and credits of a workspace in one time window (minute, day or month).

    Limits are enforced on these rows with conditional upserts inside one write transaction,
    so concurrent requests can never both take the last unit.
    """

    workspace_id: str = Field(primary_key=True, foreign_key="workspace.id")
    window: str = Field(primary_key=True)  # minute | day | month
    period: str = Field(primary_key=True)  # 2026-11-23T12:05 | 2026-11-23 | 2026-11
    requests: int = 0
    images: int = 0
    credits: int = 0


class AppSetting(SQLModel, table=True):
    """Runtime settings an admin changes in the studio (they override the environment's defaults)."""

    key: str = Field(primary_key=True)
    value: Any = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)


class ApiLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    user_id: str | None = Field(default=None, index=True)
    workspace_id: str | None = Field(default=None, index=True)
    key_prefix: str | None = None
    method: str
    endpoint: str
    status: int
    duration_ms: int
    request_id: str
    credits: int = 0


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a POST sent with an Idempotency-Key, replayed for retries."""

    user_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=255)
    endpoint: str
    body_hash: str
    status: int | None = None  # None while the first request is still running
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class PendingCharge(SQLModel, table=True):
    """Units an admission took and has not settled yet. Written in the admission's transaction and removed
    in the settlement's, so after a crash the rows left here are exactly what must be given back."""

    id: str = Field(default_factory=lambda: new_id("chg"), primary_key=True)
    workspace_id: str = Field(index=True)
    requests: int
    credits: int
    periods: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    # A live charge is also a concurrency slot: the process that holds it, until when (engine/data/leases.py).
    process_id: str | None = Field(default=None, index=True)
    lease_expires_at: datetime | None = Field(default=None, index=True)


class SignInAttempt(SQLModel, table=True):
    """One password sign-in attempt, counted per account and address, per address and per account
    (engine/accounts/throttle.py), in the database so that every process counts the same attempts."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # pair (account|address) | address | account
    subject: str = Field(index=True, max_length=320)
    at: datetime = Field(default_factory=utcnow, index=True)
