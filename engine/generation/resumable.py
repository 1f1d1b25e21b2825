"""Async jobs as data: what any process needs to run one again after the process that accepted it died.

A job answered with 202 has no caller waiting on a connection of the process that runs it, so its death need
not be the job's. Such a job's row carries, beside its parameters, its ``request``: the admission it is billed
to, whether its image is stored, references to its input images (kept in the inputs store until it ends), and
how its end is announced (webhook, base URL of links). When the job's lease runs out, or its process is known
dead, another process claims it (a conditional update, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
recovering processes never both take it), adopts its charge and runs it from the row. That happens once
(``MAX_REQUEUES``); a second loss fails it and gives its charge back. Nothing is charged twice: the image is
made final in the charge in the transaction that records it, whichever process that is.

Jobs with a waiting caller (sync requests, the studio, batches) keep their closures and end with their
process, as before: their callers are gone with it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from engine.generation.jobs import GenerationJob
from engine.generation.params import ResolvedParams

MAX_REQUEUES = 1


@dataclass(frozen=True)
class AsyncJob:
    """How an async job is announced when it ends: the webhook (API key id, URL) and the base URL of its links."""

    webhook: tuple[str, str] | None = None
    base_url: str = ""


def input_refs(job_id: str, count: int, mask: bool) -> tuple[list[str], str | None]:
    """The inputs store's names for a job's input images and mask."""
    return [f"{job_id}_in{n}" for n in range(count)], (f"{job_id}_mask" if mask else None)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # lossless: the job runs again on exactly the pixels it was given
    return buffer.getvalue()


def job_request(job: GenerationJob, async_job: AsyncJob, inputs: list[str], mask: str | None,
                run_strength: float) -> dict:
    """A job's ``request`` column: everything beside its parameters that running it again needs."""
    return {"store": job.store, "charge_id": job.charge_id, "cost": job.cost, "strength": job.strength,
            "source_image_id": job.source_image_id, "inputs": inputs, "mask": mask, "run_strength": run_strength,
            "webhook": list(async_job.webhook) if async_job.webhook else None, "base_url": async_job.base_url}


def generation_job(kind: str, params: dict, request: dict, user) -> GenerationJob:
    """The GenerationJob of a job row (its parameters as recorded, its request)."""
    return GenerationJob(user=user, params=ResolvedParams(**params), store=request["store"], kind=kind,
                         charge_id=request["charge_id"], cost=request["cost"], strength=request["strength"],
                         source_image_id=request["source_image_id"])
