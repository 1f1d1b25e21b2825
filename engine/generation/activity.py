"""A user's generation work, seen from any process: what is in progress (A1111's ``/progress``, ``/interrupt`` and
``/skip``; the studio's queue panel, with each job's place in line) and what finished lately (the studio's recent
results, after a reload or a restart). Only the caller's own jobs, never another user's.

The job rows are the truth across processes (status, and progress written about once a second by the process
that runs a job, with the latest preview where the pipeline gives one); a job this process runs adds its live step
and preview.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import col, select

from engine.data.db import read_scope
from engine.data.tables import Job, JobStatus, utcnow
from engine.errors import NotFound
from engine.generation.jobs import GenerationResult
from engine.generation.params import ResolvedParams

if TYPE_CHECKING:
    from engine.service import ImageEngine

# Kinds that are not image generation (background removal has no steps and is not interrupted by A1111 calls).
_NOT_GENERATION = ("remove_background",)


@dataclass(frozen=True)
class ActiveJob:
    job_id: str
    status: str  # queued | running
    step: int
    total: int
    created_at: datetime
    started_at: datetime | None
    preview: Callable[[], bytes | None] | None = None  # the latest intermediate PNG, where the model gives one
    prompt: str = ""
    model: str = ""
    ahead: int = 0  # queued: how many jobs (anyone's) wait or run before it
    user_id: str = ""


def active_jobs(engine: ImageEngine, user_id: str | None) -> list[ActiveJob]:
    """The user's queued and running generation jobs (None: everyone's, for admins), oldest first. A job whose
    process stopped vouching for it (its lease ran out) is not counted: it is failed by the next recovery."""
    query = select(Job).where(col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                              col(Job.kind).not_in(_NOT_GENERATION), Job.lease_expires_at > utcnow())
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    with read_scope(engine.db) as session:
        rows = session.exec(query.order_by(col(Job.created_at))).all()
    jobs = []
    for row in rows:
        task = engine.live_task(row.id)
        if task is not None and task.future.done():
            continue  # finished here a moment ago; its row is being written
        status = task.status if task is not None else row.status
        if task is not None:
            step, total, preview = task.step, task.total, (lambda task=task: task.preview)
        else:
            # Another process runs it: its progress and preview as that process last wrote them (once a second).
            step, total = row.progress_step or 0, row.progress_total or 0
            preview = (lambda data=row.preview: data) if row.preview else None
        total = total or int(row.params.get("steps") or 0)
        jobs.append(ActiveJob(job_id=row.id, status=status, step=step, total=total, created_at=row.created_at,
                              started_at=row.started_at, preview=preview, prompt=str(row.params.get("prompt", "")),
                              model=str(row.params.get("model", "")), user_id=row.user_id or ""))
    return jobs


def with_places(engine: ImageEngine, jobs: list[ActiveJob]) -> list[ActiveJob]:
    """Each queued job with how many live jobs, anyone's, are ahead of it (older and not finished)."""
    queued = [job for job in jobs if job.status == JobStatus.QUEUED]
    if not queued:
        return jobs
    with read_scope(engine.db) as session:
        live = session.exec(select(Job.created_at).where(
            col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]), Job.lease_expires_at > utcnow(),
            Job.created_at < max(job.created_at for job in queued))).all()
    return [dataclasses.replace(job, ahead=sum(moment < job.created_at for moment in live))
            if job.status == JobStatus.QUEUED else job for job in jobs]


def recent_results(engine: ImageEngine, user_id: str, limit: int = 12,
                   since: datetime | None = None) -> list[GenerationResult]:
    """The user's latest finished images (``since``: finished after it), newest first, whichever tab or process
    made them: stored ones from the gallery, others while their short-lived copy lasts (blocking: files are read)."""
    query = select(Job).where(Job.user_id == user_id, Job.status == JobStatus.SUCCEEDED, col(Job.result).is_not(None))
    if since is not None:
        query = query.where(Job.finished_at > since)
    with read_scope(engine.db) as session:
        rows = session.exec(query.order_by(col(Job.finished_at).desc()).limit(limit * 2)).all()
    results = []
    for row in rows:
        result = job_image(engine, row)
        if result is not None:
            results.append(result)
        if len(results) == limit:
            break
    return results


def job_image(engine: ImageEngine, row: Job) -> GenerationResult | None:
    """A succeeded job's image as a result, or None once it is gone (deleted, or an unstored copy expired)."""
    kept = row.result or {}
    if kept.get("stored"):
        try:
            record = engine.gallery.get(kept["image_id"], row.user_id)
            png = engine.gallery.read(record)
        except NotFound:
            return None
        strength, source = record.strength, record.source_image_id
    else:
        png, strength, source = engine.results.get(row.id), None, None
        if png is None:
            return None
    params = ResolvedParams(**{key: value for key, value in kept["params"].items()
                               if key in ResolvedParams.__dataclass_fields__})
    return GenerationResult(job_id=row.id, image_id=kept["image_id"], params=params, png=png,
                            stored=bool(kept.get("stored")), duration_ms=int(kept.get("duration_ms") or 0),
                            kind=kept.get("kind") or row.kind, strength=strength, source_image_id=source)


def cancel_active(engine: ImageEngine, user_id: str, *, running_only: bool = False) -> int:
    """Cancel the user's queued and running generation jobs (``running_only``: just the running ones, A1111's
    "skip"), wherever they run; returns how many were asked to stop."""
    cancelled = 0
    for job in active_jobs(engine, user_id):
        if running_only and job.status != JobStatus.RUNNING:
            continue
        cancelled += engine.cancel_job(job.job_id)
    return cancelled


@dataclass(frozen=True)
class FinishedJob:
    job_id: str
    kind: str
    status: str  # succeeded | failed | cancelled
    prompt: str
    model: str
    seconds: float  # from accepted to finished: what the person waited
    finished_at: datetime


def finished_since(engine: ImageEngine, since: datetime, limit: int = 50) -> list[FinishedJob]:
    """Anyone's jobs that ended after ``since``, oldest first (the desktop app's "your image is ready" notices)."""
    query = select(Job).where(col(Job.status).in_(JobStatus.FINISHED), Job.finished_at > since)
    with read_scope(engine.db) as session:
        rows = session.exec(query.order_by(col(Job.finished_at)).limit(limit)).all()
    return [FinishedJob(job_id=row.id, kind=row.kind, status=row.status, prompt=str(row.params.get("prompt", "")),
                        model=str(row.params.get("model", "")), finished_at=row.finished_at,
                        seconds=max(0.0, (row.finished_at - row.created_at).total_seconds()))
            for row in rows]
