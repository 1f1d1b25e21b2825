"""Domain errors raised by the engine. The API maps each class to one status code."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: ``code`` is the machine-readable error code shown to clients."""

    code = "engine_error"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(EngineError):
    code = "invalid_request"


class NotFound(EngineError):
    code = "not_found"


class Unauthenticated(EngineError):
    code = "unauthorized"


class Forbidden(EngineError):
    code = "forbidden"


class ModelUnavailable(EngineError):
    code = "model_unavailable"


class ModelNotFound(EngineError):
    code = "model_not_found"


class QueueFull(EngineError):
    code = "queue_full"


class GenerationFailed(EngineError):
    code = "generation_failed"


class JobCancelled(EngineError):
    code = "job_cancelled"


class PayloadTooLarge(EngineError):
    code = "payload_too_large"


class UnsupportedMedia(EngineError):
    code = "unsupported_media_type"


class RateLimited(EngineError):
    """A per-minute/day/month or concurrency limit was hit; ``retry_after`` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, limit: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message, field=field)
        self.retry_after = max(1, int(retry_after))
        self.limit = limit
        self.headers = headers or {}  # RateLimit headers describing the exhausted window


class InsufficientCredits(EngineError):
    code = "insufficient_credits"


class StorageFull(EngineError):
    code = "storage_full"


class DiskFull(StorageFull):
    """The disk can't hold what a pull would write (its message says how much is needed and free)."""

    code = "disk_full"


class PullCancelled(JobCancelled):
    """A model pull was cancelled; its partial files stay, so the next pull resumes."""

    code = "pull_cancelled"


class DownloadFailed(ModelUnavailable):
    """The hub refused a pull or the connection broke beyond the retries; pulling again resumes."""

    code = "download_failed"


class Conflict(EngineError):
    code = "conflict"


class DatabaseBusy(EngineError):
    """Another writer held the database lock for longer than the busy timeout."""

    code = "database_busy"


# A vendor's API behind a model (engine/providers): its failures, as a client of ours should read them.
class ProviderUnavailable(ModelUnavailable):
    """The vendor can't serve now: down, busy, misconfigured, or it answered with something unusable."""

    code = "provider_unavailable"


class ProviderOutOfCredit(ProviderUnavailable):
    """The server's account at the vendor has no credit left: the admin must top it up."""

    code = "provider_out_of_credit"


class ProviderTimeout(ProviderUnavailable):
    """The vendor did not finish within the provider's time limit."""

    code = "provider_timeout"


class ContentModerated(InvalidRequest):
    """The vendor's moderation refused the prompt or the image."""

    code = "content_moderated"
