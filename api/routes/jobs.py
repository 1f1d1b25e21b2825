"""GET /jobs/{id}: status and result of an asynchronous generation; DELETE cancels it."""

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import CurrentUser, EngineDep
from api.responses import base_url, error_responses, generation_info, hosted_image_url, ok, signed_result_path
from api.schemas import Envelope, ImageLinks
from engine.data.tables import JobStatus
from engine.generation.png import data_url

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobProgress(BaseModel):
    step: int
    total: int


class JobResult(ImageLinks):
    image: str | None = Field(description="The PNG: its hosted URL when stored, else a data URL "
                                           "(data:image/png;base64,…) until it expires, then null")
    image_url: str | None = Field(description="Same as `image`")
    expired: bool = Field(False, description="The image was not stored and its copy for this job has expired")
    download_url: str | None = Field(None, description="A signed link to the PNG, stored or not (null once "
                                                       "expired): a file to download instead of a data URL")


class JobData(BaseModel):
    job_id: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    kind: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: JobResult | None
    progress: JobProgress | None = None


class CancelData(BaseModel):
    job_id: str
    cancelling: bool


@router.get("/{job_id}", response_model=Envelope[JobData], responses=error_responses(401, 404))
def get_job(job_id: str, request: Request, user: CurrentUser, engine: EngineDep, inline: bool = True):
    """`queued`, `running` (with `progress`), `succeeded` (with `result`), `failed` (with `error`) or `cancelled`.
    `inline=false`: an image that was not stored comes as its signed `download_url` in `image` too, not as a
    data URL (a small answer for callers with little memory, such as PHP)."""
    job = engine.job(job_id, user.id)
    data = {"job_id": job.id, "status": job.status, "kind": job.kind, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at, "error": job.error, "result": None}
    progress = engine.job_progress(job)
    if progress is not None and job.status == JobStatus.RUNNING:
        data["progress"] = {"step": progress[0], "total": progress[1]}
    if job.status == JobStatus.SUCCEEDED and job.result:
        result, params = job.result, job.result["params"]
        if result["stored"]:
            url = download = hosted_image_url(request, engine, result["image_id"], result.get("file_path"))
        else:
            png = engine.results.get(job.id)
            download = base_url(request, engine) + signed_result_path(job.id, engine) if png else None
            url = (data_url(png) if inline else download) if png else None
        data["result"] = {"id": result["image_id"], "job_id": job.id, "image": url, "image_url": url,
                          "expired": url is None, "download_url": download, "format": "png",
                          **generation_info(params), "duration_ms": result["duration_ms"]}
    return ok(data)


@router.delete("/{job_id}", response_model=Envelope[CancelData], responses=error_responses(401, 404))
def cancel_job(job_id: str, user: CurrentUser, engine: EngineDep):
    """Cancel a queued job at once (recorded as cancelled, its charge refunded), or a running one at its next step."""
    job = engine.job(job_id, user.id)
    return ok({"job_id": job.id, "cancelling": engine.cancel_job(job.id)})


