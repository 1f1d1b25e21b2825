"""A user's generation work in progress, seen from any process: what A1111's ``/progress``, ``/interrupt`` and
``/skip`` show and stop. Only the caller's own jobs, never another user's.

The job rows are the truth across processes (status, and progress written about once a second by the process
that runs a job); a job this process runs adds its live step and, where the pipeline gives one, a preview.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import col, select

from engine.data.db import read_scope
from engine.data.tables import Job, JobStatus, utcnow

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
    preview: Callable[[], bytes | None] | None = None  # the latest intermediate PNG (this process's jobs only)


def active_jobs(engine: ImageEngine, user_id: str) -> list[ActiveJob]:
    """The user's queued and running generation jobs, oldest first. A job whose process stopped vouching for it
    (its lease ran out) is not counted: it is failed by the next recovery."""
    with read_scope(engine.db) as session:
        rows = session.exec(select(Job).where(
            Job.user_id == user_id, col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]),
            col(Job.kind).not_in(_NOT_GENERATION), Job.lease_expires_at > utcnow())
            .order_by(col(Job.created_at))).all()
    jobs = []
    for row in rows:
        task = engine.worker.get(row.id)
        if task is not None and task.future.done():
            continue  # finished here a moment ago; its row is being written
        status = task.status if task is not None else row.status
        if task is not None:
            step, total, preview = task.step, task.total, (lambda task=task: task.preview)
        else:
            step, total, preview = row.progress_step or 0, row.progress_total or 0, None
        total = total or int(row.params.get("steps") or 0)
        jobs.append(ActiveJob(job_id=row.id, status=status, step=step, total=total, created_at=row.created_at,
                              started_at=row.started_at, preview=preview))
    return jobs


def cancel_active(engine: ImageEngine, user_id: str, *, running_only: bool = False) -> int:
    """Cancel the user's queued and running generation jobs (``running_only``: just the running ones, A1111's
    "skip"), wherever they run; returns how many were asked to stop."""
    cancelled = 0
    for job in active_jobs(engine, user_id):
        if running_only and job.status != JobStatus.RUNNING:
            continue
        cancelled += engine.cancel_job(job.job_id)
    return cancelled
