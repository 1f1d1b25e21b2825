"""Running queued work on the worker thread, and recording it: the pipeline call, the image file and its
record, the job's status and the bill, each image in one transaction with its record."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

from PIL import Image
from sqlalchemy import update
from sqlmodel import col

from engine.billing.metering import Meter
from engine.data.db import session_scope
from engine.data.tables import ImageRecord, Job, JobStatus, User, new_id, utcnow
from engine.errors import DatabaseBusy, EngineError, GenerationFailed, JobCancelled
from engine.generation.params import ResolvedParams, encode_png, latent_preview, run_pipeline, supports_preview
from engine.generation.pipelines import PipelineManager
from engine.generation.worker import Task
from engine.storage.files import ImageStore
from engine.storage.results import ResultCache

log = logging.getLogger(__name__)


def job_result(result: GenerationResult) -> dict:
    """What a finished job keeps for later polling (an image not stored waits in the ResultCache)."""
    return {"image_id": result.image_id, "params": result.params.as_dict(), "stored": result.stored,
            "duration_ms": result.duration_ms, "kind": result.kind, "file_path": result.file_path}


@dataclass(frozen=True)
class GenerationJob:
    """What the worker needs to run and record one request."""

    user: User
    params: ResolvedParams
    store: bool
    kind: str = "generate"
    # The admission this image is billed to, and its price: the image is made final in the transaction that
    # records it (Meter.deliver). None: not metered (the CLI, tests).
    charge_id: str | None = None
    cost: int = 0
    # An edit's context, recorded with its image: the strength it ran at (None where the model has none) and its
    # source, when that is an image of the gallery.
    strength: float | None = None
    source_image_id: str | None = None

    def png_extra(self) -> dict | None:
        if self.kind == "generate":
            return None
        extra = {"kind": self.kind, "strength": self.strength, "source_image_id": self.source_image_id}
        return {key: value for key, value in extra.items() if value is not None}


@dataclass
class GenerationResult:
    job_id: str
    image_id: str
    params: ResolvedParams
    png: bytes
    stored: bool
    duration_ms: int
    kind: str = "generate"
    strength: float | None = None
    source_image_id: str | None = None
    file_path: str | None = None  # where a stored image is, relative to the store (for presigned links)


PROGRESS_SYNC_S = 1.0


class ProgressSync:
    """Every second or so while tasks run: their progress and latest preview into their job rows (so any process
    can show them), and a cancel another process asked for (``Job.cancel_requested``) back into the task, which
    stops at its next step. One statement a second (and one per preview), not one a denoising step."""

    def __init__(self, db, tasks: list[Task]):
        self.db = db
        self.tasks = {task.id: task for task in tasks}
        self._last = 0.0

    def step(self, step: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_SYNC_S and step < total:
            return
        self._last = now
        previews = {job_id: task.preview for job_id, task in self.tasks.items() if task.preview_source}
        try:
            with session_scope(self.db) as session:
                cancelled = session.execute(
                    update(Job).where(col(Job.id).in_(list(self.tasks)))
                    .values(progress_step=step, progress_total=total)
                    .returning(Job.id, Job.cancel_requested)).all()
                for job_id, preview in previews.items():
                    session.execute(update(Job).where(Job.id == job_id).values(preview=preview))
                session.commit()
        except DatabaseBusy:  # progress is bookkeeping: skip this one, try again in a second
            return
        for job_id, requested in cancelled:
            if requested:
                self.tasks[job_id].cancel_event.set()


class JobRunner:
    """What the worker runs for a task, and how its outcome is recorded."""

    def __init__(self, db, pipelines: PipelineManager, store: ImageStore, results: ResultCache):
        self.db = db
        self.pipelines = pipelines
        self.store = store
        self.results = results

    def run_background_removal(self, task: Task, job: GenerationJob, remover, image: Image.Image) -> GenerationResult:
        self.mark_running(task)
        started = time.perf_counter()
        try:
            png = encode_png(remover.remove(image), job.params, {"kind": job.kind})
            return self.complete(task, job, png, started)
        except BaseException as exc:
            self.raise_failed(task, exc)

    def run_remote(self, task: Task, job: GenerationJob, provider, route) -> GenerationResult:
        """A generation at a vendor (engine/providers): its image recorded exactly like a local one."""
        from engine.providers.base import decoded_image

        self.mark_running(task)
        task.total = 1  # no steps to show: waiting, then done
        started = time.perf_counter()
        try:
            data = provider.generate(route.vendor_model, job.params, should_stop=lambda: task.cancelled)
            image = decoded_image(data, provider.label)
            if task.cancelled:
                raise JobCancelled("the job was cancelled")
            extra = (job.png_extra() or {}) | {"provider": provider.name, "vendor_model": route.vendor_model}
            png = encode_png(image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"), job.params,
                             extra)
            task.report(1, 1)
            return self.complete(task, job, png, started)
        except BaseException as exc:
            self.raise_failed(task, exc)

    def run_remote_cutout(self, task: Task, job: GenerationJob, provider, image: Image.Image) -> GenerationResult:
        """Background removal at Stability AI (chosen by the admin instead of local rembg)."""
        from engine.providers.base import decoded_image

        self.mark_running(task)
        started = time.perf_counter()
        try:
            data = provider.remove_background(image, should_stop=lambda: task.cancelled)
            cut = decoded_image(data, provider.label).convert("RGBA")
            png = encode_png(cut, job.params, {"kind": job.kind, "provider": provider.name})
            return self.complete(task, job, png, started)
        except BaseException as exc:
            self.raise_failed(task, exc)

    def run_generation_batch(self, tasks: list[Task]) -> None:
        """One pipeline call for compatible text-to-image tasks, each with its own seed and prompts.

        A failure of the shared call fails every task; a failure while storing one image fails only that one.
        """
        live = []
        for task in tasks:
            self.mark_running(task)
            if task.cancelled:
                task.finish(error=self.failed(task, JobCancelled("the job was cancelled")))
            else:
                live.append(task)
        if not live:
            return
        params = [task.payload.params for task in live]
        started = time.perf_counter()

        progress = ProgressSync(self.db, live)

        def on_step(step: int, total: int) -> bool:
            progress.step(step, total)
            keep_going = [task.report(step, total) for task in live]
            return any(keep_going)  # stop early only when every request in the batch was cancelled

        try:
            loaded = self.pipelines.get(params[0].model)
            on_latents = None
            if supports_preview(loaded.spec):
                def on_latents(_step: int, latents) -> None:
                    # Latents of classifier-free guidance come doubled only inside the UNet; here one per image.
                    # A copy (on the device: no GPU sync per step), turned into a PNG only if somebody looks:
                    # the studio does, API calls don't.
                    for task, one in zip(live, latents, strict=False):
                        task.preview_source = functools.cache(functools.partial(latent_preview, one.detach().clone(),
                                                                                loaded.spec))

            images = run_pipeline(loaded.pipe, loaded.spec, params, on_step=on_step, on_latents=on_latents,
                                  should_stop=lambda: all(task.cancelled for task in live))
        except BaseException as exc:
            for task in live:
                task.finish(error=self.failed(task, exc))
            return
        for task, image in zip(live, images, strict=True):
            try:
                if task.cancelled:
                    raise JobCancelled("the job was cancelled")
                png = encode_png(image, task.payload.params, task.payload.png_extra())
                task.finish(result=self.complete(task, task.payload, png, started))
            except BaseException as exc:
                task.finish(error=self.failed(task, exc))

    def run_edit(self, task: Task, job: GenerationJob, init_images: list[Image.Image], strength: float,
                 mask: Image.Image | None = None) -> GenerationResult:
        self.mark_running(task)
        started = time.perf_counter()
        try:
            spec = self.pipelines.catalog.get(job.params.model)
            if mask is not None:
                pipe = self.pipelines.inpaint_pipe(spec)
            else:
                pipe = self.pipelines.get(spec.slug).edit_pipe()
            progress = ProgressSync(self.db, [task])

            def on_step(step: int, total: int) -> bool:
                progress.step(step, total)
                return task.report(step, total)

            image = run_pipeline(pipe, spec, [job.params], on_step=on_step, init_images=init_images,
                                 strength=strength, mask=mask, should_stop=lambda: task.cancelled)[0]
            if task.cancelled:
                raise JobCancelled("the job was cancelled")
            return self.complete(task, job, encode_png(image, job.params, job.png_extra()), started)
        except BaseException as exc:
            self.raise_failed(task, exc)

    def raise_failed(self, task: Task, exc: BaseException):
        error = self.failed(task, exc)
        if error is exc:
            raise exc
        raise error from exc

    def mark_running(self, task: Task) -> None:
        task.total = task.payload.params.steps if task.payload else task.total
        self.update_job(task.id, status=JobStatus.RUNNING, started_at=utcnow())

    def complete(self, task: Task, job: GenerationJob, png: bytes, started: float) -> GenerationResult:
        """Store the image and its record, mark the job done; returns the task's result."""
        duration_ms = int((time.perf_counter() - started) * 1000)
        image_id, now = new_id("img"), utcnow()
        if job.store:
            relative = self.store.save(image_id, png, now.strftime("%Y/%m"))
        else:
            relative = None
            self.results.put(task.id, png)
        result = GenerationResult(job_id=task.id, image_id=image_id, params=job.params, png=png, stored=job.store,
                                  duration_ms=duration_ms, kind=job.kind, strength=job.strength,
                                  source_image_id=job.source_image_id, file_path=relative)
        p = job.params
        record = ImageRecord(
            id=image_id, user_id=job.user.id, workspace_id=job.user.workspace_id, job_id=task.id, model=p.model,
            prompt=p.prompt, negative_prompt=p.negative_prompt, width=p.width, height=p.height, steps=p.steps,
            guidance_scale=p.guidance_scale, seed=p.seed, kind=job.kind, strength=job.strength,
            source_image_id=job.source_image_id, file_path=relative, bytes=len(png), duration_ms=duration_ms,
            created_at=now,
        )
        try:
            # The record, the job's success and the bill in one transaction: all or nothing.
            with session_scope(self.db) as session:
                session.add(record)
                session.flush()  # the record (and its foreign-key checks) before the charge's locks
                if job.charge_id and not Meter.deliver(session, job.charge_id, job.cost):
                    log.warning("job %s delivered an image whose charge %s was already settled", task.id,
                                job.charge_id)
                row = session.get(Job, task.id)
                row.status, row.image_id, row.finished_at, row.result = (JobStatus.SUCCEEDED, image_id, now,
                                                                         job_result(result))
                row.preview = None
                session.add(row)
                session.commit()
        except BaseException:
            # No file without a record pointing at it.
            if relative:
                self.store.delete(relative)
            else:
                self.results.delete(task.id)
            raise
        return result

    def failed(self, task: Task, exc: BaseException) -> EngineError:
        """Record why a job failed; the domain error to hand its caller (unexpected ones wrapped)."""
        if isinstance(exc, JobCancelled):
            self.update_job(task.id, status=JobStatus.CANCELLED, error=exc.message, finished_at=utcnow(), preview=None)
            return exc
        if isinstance(exc, EngineError):
            self.update_job(task.id, status=JobStatus.FAILED, error=exc.message[:500], finished_at=utcnow(),
                            preview=None)
            return exc
        # One error policy: the log gets the traceback; the job and the caller a safe message (an exception's
        # text can carry file paths, model internals or other users' data).
        log.error("job %s failed", task.id, exc_info=exc)
        message = f"generation failed because of an internal error (job {task.id}; details in the server log)"
        self.update_job(task.id, status=JobStatus.FAILED, error=message, finished_at=utcnow(), preview=None)
        return GenerationFailed(message)

    def update_job(self, job_id: str, **changes) -> None:
        with session_scope(self.db) as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            for key, value in changes.items():
                setattr(job, key, value)
            session.add(job)
            session.commit()

