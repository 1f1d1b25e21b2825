"""One settings class for the whole process (env prefix ``IMAGESTUDIO_``, ``.env`` read)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGESTUDIO_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Database, images, models and secrets live here.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in data_dir.")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(default=None, description="Base URL shown in snippets and hosted image links.")

    models_path: Path | None = Field(default=None, description="Model weights folder; default: data_dir/models.")
    default_model: str = "flux-schnell"
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Requested slug -> model that runs it, as JSON (e.g. {\"flux-2-pro\": \"flux-2-dev\"}); "
                    "the admin page and `imagestudio models alias` change them at runtime.")
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    memory_budget_gb: float = Field(
        default=0.0, ge=0, description="Bytes of loaded pipelines kept resident; 0 = 80% of device memory."
    )
    allow_downloads: bool = Field(default=True, description="Fetch missing weights from the hub on first use.")
    hub_url: str = Field(default="https://huggingface.co",
                         description="The model hub `models pull` downloads from (a mirror, or a local stand-in).")
    cpu_threads: int = Field(default=0, ge=0, description="torch threads on a CPU-only box; 0 = one per core but "
                                                          "one, which stays free for the API.")
    tune_malloc: bool = Field(default=True, description="Keep the pipeline's working memory resident in glibc "
                                                        "malloc instead of page-faulting it in at every step.")
    max_batch: int = Field(default=0, ge=0, le=64,
                           description="Most compatible requests run as one pipeline call; 0 = 8. Fewer where "
                                       "their size is big for the device (engine/generation/device.py).")
    batch_window_ms: float = Field(default=15.0, ge=0, le=1000,
                                   description="How long a lone request may wait for companions to batch with.")
    compile: bool = Field(default=False, description="torch.compile the denoiser at load (GPU; slow first load).")
    channels_last: bool = Field(default=True, description="channels-last memory format for UNets/VAEs on CUDA "
                                                          "(slower on CPU and a copy of the weights: unused there).")

    worker: Literal["local", "ray"] = Field(
        default="local", description="local: the pipelines run in this process; ray: on Ray Serve replicas of a "
                                     "deployment per model family (the ray extra), anywhere in a Ray cluster.")
    ray_address: str | None = Field(default=None, description="The Ray cluster (e.g. 10.0.0.5:6379, or auto); "
                                                               "unset: a Ray instance started on this box.")
    ray_num_gpus: float | None = Field(default=None, ge=0, description="GPUs per replica; unset: 1 on a CUDA box, "
                                                                       "else 0 (CPU replicas).")
    ray_num_cpus: float = Field(default=1.0, ge=0, description="CPUs per replica.")
    ray_min_replicas: int = Field(default=1, ge=1, description="Replicas per model family at least.")
    ray_max_replicas: int = Field(default=1, ge=1, description="Replicas per family at most (autoscaled between).")
    storage_enabled: bool = True
    storage_url: str | None = Field(
        default=None, description="s3://bucket/prefix: stored images and unstored results in S3-compatible object "
                                  "storage (AWS S3, MinIO, R2, SeaweedFS); default: files in data_dir.")
    s3_endpoint_url: str | None = Field(default=None, description="The S3 API's URL for a non-AWS service.")
    s3_region: str | None = Field(default=None, description="The bucket's region (us-east-1 if unset).")
    s3_access_key_id: str | None = Field(default=None, description="Unset: boto3's own chain (AWS_* variables, roles).")
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="auto: path-style with an s3_endpoint_url (MinIO, SeaweedFS), else virtual-host.")
    hosted_links: Literal["signed", "presigned"] = Field(
        default="signed", description="Links to stored images: our signed links (served by this API) or presigned "
                                      "URLs of the objects (served by the storage itself; needs storage_url).")
    result_ttl_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60,
                                    description="How long GET /jobs/{id} can still return an image that was not stored.")
    cors_strict: bool = Field(
        default=False, validation_alias=AliasChoices("CORS_PUBLIC_API_STRICT_ORIGINS", "IMAGESTUDIO_CORS_STRICT"),
        description="Only the origins in cors_origins may call the public API from a browser.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allowed origins in strict CORS mode (comma-separated or a JSON list).")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed (comma-separated "
                    "or a JSON list; '*' for any). None by default: a client can't pick its own address.")
    log_retention_days: int = Field(default=90, ge=0,
                                    description="API log rows older than this are removed; 0 keeps them forever.")
    jwt_ttl_minutes: int = Field(default=60 * 12, ge=1)
    allow_private_fetch: bool = Field(default=False, description="Let input_image URLs reach private addresses.")
    studio_enabled: bool = True
    # `imagestudio desktop`: what closing the window does (ask, keep serving in the background, or quit), and how
    # long a job must have taken for a desktop notification when it finishes.
    desktop_on_close: Literal["ask", "background", "quit"] = "ask"
    desktop_notify_after_s: float = Field(default=20.0, ge=0)
    secret_key: str | None = Field(default=None, description="Signs JWTs and links; generated into data_dir if unset.")
    max_body_bytes: int = 16 * 1024 * 1024
    prompt_tools_per_minute: int = Field(
        default=60, ge=1, description="Calls a minute per workspace to the prompt tools, which are free and outside "
                                      "the daily/monthly quotas: a guard for the server, not a quota.")

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value):
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("storage_url")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value:
            from engine.storage.objects import S3Location

            S3Location.parse(value)  # a ValueError: pydantic's clear message at start-up
        return value or None

    @model_validator(mode="after")
    def _replica_bounds(self):
        if self.ray_max_replicas < self.ray_min_replicas:
            raise ValueError("ray_max_replicas must be at least ray_min_replicas")
        return self

    @model_validator(mode="after")
    def _presigned_needs_objects(self):
        if self.hosted_links == "presigned" and not self.storage_url:
            raise ValueError("hosted_links=presigned needs storage_url (s3://bucket/prefix): files on disk have no "
                             "presigned URLs")
        return self

    def uvicorn_proxy_options(self) -> dict:
        """uvicorn believes X-Forwarded-* only from the configured proxies (its own default trusts 127.0.0.1,
        so any local client could claim another address and slip past the per-address sign-in limit)."""
        if not self.trusted_proxies:
            return {"proxy_headers": False}
        return {"proxy_headers": True, "forwarded_allow_ips": ",".join(self.trusted_proxies)}

    @property
    def models_dir(self) -> Path:
        return self.models_path or self.data_dir / "models"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'imagestudio.db').resolve()}"

    def ensure_dirs(self) -> None:
        # The data dir holds the database (password and key hashes, the signing secret): its owner's only.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (self.models_dir, self.images_dir):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def secret_key_file(self) -> Path:
        """Where versions before the database-stored secret kept a generated one (adopted once, if present)."""
        return self.data_dir / "secret_key"
