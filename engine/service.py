"""The engine facade used by the API and the studio alike."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from PIL import Image
from sqlalchemy import and_, or_, text, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from engine.accounts.admin import Administration
from engine.accounts.directory import Accounts
from engine.accounts.keys import ServerKeys
from engine.accounts.throttle import LoginThrottle
from engine.accounts.users import (
    KEY_PREFIX,
    authenticate_key,
    authenticate_password,
    ensure_default_plans,
    key_use_is_stale,
    plan_for,
    record_key_use,
    user_from_access_token,
)
from engine.billing.metering import Meter
from engine.billing.pricing import SMALL_PIXELS, generation_credits
from engine.config import Settings
from engine.data.db import init_db, make_engine, read_scope, session_scope
from engine.data.idempotency import IdempotencyStore
from engine.data.leases import HEARTBEAT_S, LEASE, ProcessIdentity
from engine.data.request_log import RequestLog
from engine.data.tables import Job, JobStatus, User, utcnow
from engine.errors import (
    DatabaseBusy,
    EngineError,
    InvalidRequest,
    ModelUnavailable,
    NotFound,
    ProviderUnavailable,
)
from engine.generation.catalog import FAMILY_INPAINT_PIPELINES, FAMILY_PIPELINES, Catalog, ModelSpec
from engine.generation.device import (
    batch_limit,
    cpu_threads,
    device_memory_bytes,
    release_free_memory,
    resolve_device,
    resolve_dtype,
    tune_malloc,
)
from engine.generation.jobs import GenerationJob, GenerationResult, JobRunner
from engine.generation.params import (
    GenerationParams,
    ResolvedParams,
    check_edit_inputs,
    check_inputs,
    steps_for_edit,
    upscaled,
    upscaled_x4,
)
from engine.generation.pipelines import PipelineManager, WeightsState, diffusers_class
from engine.generation.png import decoded
from engine.generation.resumable import (
    MAX_REQUEUES,
    AsyncJob,
    generation_job,
    input_refs,
    job_request,
    png_bytes,
)
from engine.generation.worker import LocalWorker, Task
from engine.providers.base import Provider, ProviderConfig
from engine.providers.pool import ProviderPool
from engine.providers.registry import (
    DEFAULT_PRICES,
    DEFAULT_ROUTES,
    LABELS,
    VENDOR_MODELS,
    Route,
    make_provider,
    provider_config,
)
from engine.runtime_settings import RuntimeSettings, shared_secret_key
from engine.storage.files import ImageStore, StorageError
from engine.storage.gallery import Gallery
from engine.storage.objects import S3ImageStore, S3Location, S3ResultCache, s3_client
from engine.storage.results import ResultCache
from engine.webhooks.deliveries import Webhooks

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 300.0
OUTBOUND_WORKERS = 8
DEVICE_PROBE_TIMEOUT_S = 5.0
PROBE_REUSE_S = 1.0  # a probe's answer serves the health checks of the next second
PRESIGNED_LINK_TTL_S = 7 * 86400  # the longest S3 allows


def _preload_pipeline_modules() -> None:
    names = {pipeline for pair in FAMILY_PIPELINES.values() for pipeline in pair if pipeline}
    for name in sorted(names | set(FAMILY_INPAINT_PIPELINES.values())):
        diffusers_class(name)


INPUTS_TTL_S = 86400  # an async job's input images wait for it this long at most (it normally ends in minutes)


def image_stores(settings: Settings, owner: str) -> tuple[ImageStore | S3ImageStore, ResultCache | S3ResultCache,
                                                         ResultCache | S3ResultCache]:
    """Where stored images, unstored results and async jobs' input images go: files in the data folder, or
    S3-compatible objects."""
    ttl_s = settings.result_ttl_minutes * 60
    if not settings.storage_url:
        return (ImageStore(settings.images_dir, owner=owner), ResultCache(settings.results_dir, ttl_s=ttl_s),
                ResultCache(settings.data_dir / "inputs", ttl_s=INPUTS_TTL_S))
    secret = settings.s3_secret_access_key
    client = s3_client(settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id,
                       secret.get_secret_value() if secret else None, settings.s3_addressing_style)
    location = S3Location.parse(settings.storage_url)
    return (S3ImageStore(client, location), S3ResultCache(client, location, ttl_s=ttl_s),
            S3ResultCache(client, location, ttl_s=INPUTS_TTL_S, folder="inputs"))


def ray_worker(settings: Settings, jobs: JobRunner, device: str, dtype: torch.dtype, budget: int, max_batch: int):
    """The Ray Serve worker: replicas of a deployment per model family, on the cluster's GPUs (or CPUs)."""
    try:
        from engine.generation.ray_worker import RayWorker, ReplicaConfig
    except ImportError as exc:
        raise RuntimeError("IMAGESTUDIO_WORKER=ray needs Ray Serve: pip install -e \".[ray]\"") from exc
    gpus = settings.ray_num_gpus if settings.ray_num_gpus is not None else (1.0 if device == "cuda" else 0.0)
    config = ReplicaConfig(models_dir=str(settings.models_dir), device="cuda" if gpus else "cpu",
                           dtype=str(dtype).removeprefix("torch."), budget_bytes=budget,
                           allow_downloads=settings.allow_downloads, channels_last=settings.channels_last,
                           cpu_threads=settings.cpu_threads, max_batch=max_batch,
                           batch_window_s=settings.batch_window_ms / 1000)
    return RayWorker(jobs, config, address=settings.ray_address, num_gpus=gpus, num_cpus=settings.ray_num_cpus,
                     min_replicas=settings.ray_min_replicas, max_replicas=settings.ray_max_replicas)


def storage_description(plan) -> str:
    """A plan's storage in words, as the seed API shows it ("10 GB cloud storage"; 1 GB = 1000 MB)."""
    if plan is None or not plan.storage_enabled:
        return "No cloud storage"
    megabytes = plan.storage_quota_mb
    if megabytes >= 1000:
        return f"{megabytes / 1000:g} GB cloud storage"
    return f"{megabytes} MB cloud storage"


class ImageEngine:
    def __init__(self, settings: Settings, db: Engine | None = None):
        self.settings = settings
        settings.ensure_dirs()
        self._owns_db = db is None  # a database handed in is its owner's to close
        self.db = db or make_engine(settings.db_url)
        init_db(self.db)
        with session_scope(self.db) as session:
            ensure_default_plans(session)
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(self.device, settings.dtype)
        if settings.tune_malloc:
            tune_malloc()
        if self.device == "cpu":
            torch.set_num_threads(cpu_threads(settings.cpu_threads))
        budget = int(settings.memory_budget_gb * 1024**3) or int(device_memory_bytes(self.device) * 0.8)
        self.catalog = Catalog(self.db)
        self.pipelines = PipelineManager(self.catalog, settings.models_dir, self.device, self.dtype, budget,
                                         allow_downloads=settings.allow_downloads, compile=settings.compile,
                                         channels_last=settings.channels_last)
        self.identity = ProcessIdentity(settings.data_dir / "processes")
        self.store, self.results, self.inputs = image_stores(settings, owner=self.identity.id)
        self.gallery = Gallery(self.db, self.store)
        self.jobs = JobRunner(self.db, self.pipelines, self.store, self.results)
        self.accounts = Accounts(self.db)
        self.admin = Administration(self.db)
        self.request_log = RequestLog(self.db)
        # One server secret (configured, or made once in the database), a separate derived key for each use.
        self.secret_key = shared_secret_key(self.db, settings)
        self.keys = ServerKeys(self.secret_key)
        self.runtime = RuntimeSettings(self.db, settings, keys=self.keys)
        self.runtime.encrypt_stored_secrets()
        self.webhooks = Webhooks(self.db, self.keys, allow_private=settings.allow_private_fetch)
        for slug, target in settings.model_aliases.items():  # a misconfigured alias fails at start, not per request
            self.catalog.check_alias(slug, target)
        self.meter = Meter(self.db, self.identity.id)
        max_batch = settings.max_batch or 8
        if settings.worker == "ray":
            self.worker = ray_worker(settings, self.jobs, self.device, self.dtype, budget, max_batch)
        else:
            self.worker = LocalWorker(max_batch=max_batch, batch_window_s=settings.batch_window_ms / 1000,
                                      idle_hook=release_free_memory if settings.tune_malloc else None)
        self.remote = ProviderPool()  # jobs that wait on a vendor's API, off the GPU worker
        self._providers: dict[str, tuple[ProviderConfig, Provider]] = {}  # name -> its latest configuration
        self.started_at = time.time()
        self._recovered = False
        self._background_remover = None
        self._enhancer = None
        self.text_model_http = None  # an httpx.Client for the text model endpoint; None: the enhancer makes one
        self.login_throttle = LoginThrottle(self.db)
        self.idempotency = IdempotencyStore(self.db)
        # Slow outbound calls (input image URLs, a remote text model) wait here, in a bounded pool of their own,
        # not in the default executor that admission, settling and database reads share.
        self.outbound = ThreadPoolExecutor(max_workers=OUTBOUND_WORKERS, thread_name_prefix="imagestudio-outbound")
        self._probe: tuple[float, Future] | None = None
        self._probe_lock = threading.Lock()
        self._housekeeper: threading.Thread | None = None
        self._stopping = threading.Event()
        # Called when a job resumed here (its accepting process died) ends: (task, future, the job's request).
        # The API sets it, to send the job's webhook as the accepting process would have.
        self.resumed_job_ended: Callable[[Task, Future, dict], None] | None = None

    # -- policy ------------------------------------------------------------------------------
    def storage_for(self, user: User) -> dict:
        """Whether this user's images are stored: admin switch, plan, and the user's preference."""
        with read_scope(self.db) as session:
            plan = plan_for(session, user)
        enabled = bool(self.runtime.get("storage_enabled") and plan and plan.storage_enabled)
        wanted = bool((user.preferences or {}).get("storage", True))
        room = not enabled or self.gallery.used_bytes(user.workspace_id) < plan.storage_quota_mb * 1024 * 1024
        return {"enabled": enabled, "store": enabled and wanted and room, "plan": storage_description(plan),
                "plan_slug": plan.slug if plan else None, "quota_full": not room}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover from an earlier crash (once per process, before any work), then start the worker."""
        if not self._recovered:
            self._recovered = True
            self.recover_abandoned()  # then every few minutes, with the housekeeping, for peers that die
            self.store.remove_partial_files(self.identity.dead)
            self.housekeeping()
            # diffusers and transformers take seconds to import: do it now in the background, not in the
            # first request. The server is ready meanwhile; a request that comes sooner just waits for it.
            threading.Thread(target=_preload_pipeline_modules, name="imagestudio-preload", daemon=True).start()
        self.worker.start()
        self.webhooks.start()
        if self._housekeeper is None or not self._housekeeper.is_alive():
            self._stopping.clear()
            self._housekeeper = threading.Thread(target=self._housekeeping_loop, name="imagestudio-housekeeping",
                                                 daemon=True)
            self._housekeeper.start()

    def stop(self) -> None:
        self._stopping.set()
        self.worker.stop()
        self.remote.stop()
        self.webhooks.stop()
        self.request_log.close()
        if self._housekeeper:
            self._housekeeper.join(30)  # a housekeeping round under way ends before the database closes
        self._renew_leases(expire=True)  # what is left is abandoned now: the next start recovers it at once
        self.identity.close()
        if self._owns_db:
            self.db.dispose()  # the pool's open connections (SQLite: three descriptors each) go with the engine

    def housekeeping(self) -> dict[str, int]:
        """Forget what has expired: copies of unstored images past their TTL, idempotency records past a day,
        sign-in attempts past the throttle's window, API log rows past the retention."""
        return {"results": self.results.purge(), "idempotency_records": self.idempotency.purge(),
                "sign_in_attempts": self.login_throttle.forget_old(),
                "api_log_rows": self.request_log.forget_older_than(self.settings.log_retention_days)}

    def _housekeeping_loop(self) -> None:
        """The heartbeat (this process's leases renewed), and every few minutes the housekeeping."""
        next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL_S
        while not self._stopping.wait(HEARTBEAT_S):
            try:
                self._renew_leases()
                self._cancel_requested_elsewhere()
                recovered = self.recover_abandoned()  # each beat: an async job of a dead peer goes on soon
                if any(recovered.values()):
                    log.info("recovered: %s", recovered)
                if time.monotonic() >= next_housekeeping:
                    next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL_S
                    removed = self.housekeeping() | {"input_images": self.inputs.purge()}
                    if any(removed.values()):
                        log.info("housekeeping: %s", removed)
            except Exception:  # a busy database or a full disk now must not end the loop: log it, try later
                log.exception("heartbeat or housekeeping failed")

    def _renew_leases(self, expire: bool = False) -> None:
        now = utcnow()
        until = now if expire else now + LEASE
        self.meter.renew_leases(until)
        with session_scope(self.db) as session:
            session.exec(update(Job).where(Job.process_id == self.identity.id,
                                           Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                         .values(lease_expires_at=until))
            session.commit()

    def recover_abandoned(self) -> dict[str, int]:
        """Work nobody will finish: jobs and charges whose lease ran out, or whose process is known dead (a
        crash, on this box). An async job kept as data is claimed and run here (once); other jobs are marked
        failed and their charges given back. A live process's work is untouched."""
        now = utcnow()
        with session_scope(self.db) as session:
            job_owners = set(session.exec(select(Job.process_id).distinct().where(
                Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]), Job.lease_expires_at > now)).all())
        dead = self.identity.dead((job_owners | self.meter.charge_owners(now)) - {None})
        claimed, failed = [], 0
        with session_scope(self.db) as session:
            query = select(Job.id, Job.process_id, Job.request, Job.attempts).where(
                Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                or_(Job.process_id.is_(None),  # made before leases: nobody vouches for it
                    and_(Job.process_id != self.identity.id,
                         or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= now, Job.process_id.in_(dead)))))
            if session.connection().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)  # a peer recovering now takes the others
            for job_id, owner, request, attempts in session.exec(query).all():
                # Conditional on the owner it was read with: of two processes recovering at once, one wins.
                owned_by = Job.process_id.is_(None) if owner is None else Job.process_id == owner
                if request is not None and attempts < MAX_REQUEUES:
                    changes = {"status": JobStatus.QUEUED, "process_id": self.identity.id,
                               "lease_expires_at": now + LEASE, "attempts": attempts + 1, "started_at": None,
                               "progress_step": None, "progress_total": None, "preview": None}
                else:
                    changes = {"status": JobStatus.FAILED, "error": "interrupted by a server restart",
                               "finished_at": now, "preview": None}
                won = session.exec(update(Job).where(Job.id == job_id, owned_by,
                                                     Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                                   .values(**changes)).rowcount == 1
                if won and changes["status"] == JobStatus.QUEUED:
                    self.meter.adopt_charge(session, request.get("charge_id"), now + LEASE)  # not refunded below
                    claimed.append(job_id)
                failed += won and changes["status"] == JobStatus.FAILED
            session.commit()
        for job_id in claimed:
            self._resume(job_id)
        # A peer recovering at the same moment may be claiming a job whose row it locked (skipped above): that
        # job's charge is the peer's to adopt and settle, not a refund. So are those of every job still to run.
        with read_scope(self.db) as session:
            requests = session.exec(select(Job.request).where(
                Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))).all()
        still_to_run = {request.get("charge_id") for request in requests if request} - {None}
        return {"interrupted_jobs": failed, "resumed_jobs": len(claimed),
                "refunded_charges": self.meter.refund_abandoned(dead, now, keep=still_to_run)}

    def _resume(self, job_id: str) -> None:
        """Run a claimed async job from its row; its charge is settled here when it ends."""
        with read_scope(self.db) as session:
            row = session.get(Job, job_id)
            user = session.get(User, row.user_id) if row.user_id else None
        request = row.request
        refs = request["inputs"] + ([request["mask"]] if request["mask"] else [])
        try:
            if user is None or not user.is_active:
                raise NotFound("the job's account is gone")
            images = []
            for ref in refs:
                data = self.inputs.get(ref)
                if data is None:
                    raise NotFound("the job's input image is gone")
                images.append(decoded(data))
            mask = images.pop() if request["mask"] else None
            job = generation_job(row.kind, row.params, request, user)
            task = Task(id=row.id, owner=user.id, **self._task_fields(job, images, mask, request["run_strength"]))
        except EngineError as exc:
            self.jobs.update_job(job_id, status=JobStatus.FAILED, error=f"could not resume the job: {exc.message}",
                                 finished_at=utcnow())
            self.meter.release_charge(request.get("charge_id"))
            self._forget_inputs(refs)
            return
        log.info("resuming job %s (its process is gone)", job_id)
        pool = self.remote if task.remote else self.worker

        def ended(future: Future) -> None:
            self.meter.release_charge(request.get("charge_id"))  # what it still holds: the delivered part stays
            self._forget_inputs(refs)
            if self.resumed_job_ended is not None:
                self.resumed_job_ended(task, future, request)

        task.future.add_done_callback(ended)
        pool.submit(task)

    # -- models ------------------------------------------------------------------------------
    def resolve_model(self, slug: str | None) -> tuple[ModelSpec, str, str | None]:
        """(the model that runs, the slug asked for, a warning) for a requested slug: the admin's alias for
        it, else the model itself, else (no open weights) the first of its stand-ins whose weights are here."""
        requested = slug or self.default_model()
        target = self.runtime.get("model_aliases").get(requested)
        if target is not None:
            if slug is None:
                self._check_default_here(self.catalog.get(target))
            return self.catalog.get(target), requested, None
        spec = self.catalog.get(requested)
        route = self.route_for(requested)
        if route is not None:  # at its vendor, under our keys, limits and credits
            return dataclasses.replace(spec, provider=route.provider), requested, None
        if spec.open_weights:
            if slug is None:
                self._check_default_here(spec)
            return spec, requested, None
        for candidate in spec.fallbacks:
            stand_in = self.catalog.get(candidate)
            if self.pipelines.state(stand_in)[0] in (WeightsState.LOADED, WeightsState.READY):
                return stand_in, requested, (f"{requested} has no open weights; {candidate} ran in its place "
                                             f"(an admin can choose another with a model alias)")
        raise ModelUnavailable(
            f"'{requested}' is a {spec.unavailable_reason}. To serve it here, an admin maps it to a model that "
            f"runs on this server: `imagestudio models alias {requested} flux-2-dev` (or any model in "
            f"`imagestudio models list`), or Admin → Models → Model aliases in the studio", field="model")

    def default_model(self) -> str:
        """The model a request that names none runs: the admin's choice (`models pull --default`, the studio's
        first run), else IMAGESTUDIO_DEFAULT_MODEL."""
        return self.runtime.get("default_model")

    def set_default_model(self, slug: str) -> None:
        spec = self.catalog.get(slug)
        if not spec.text_to_image:
            raise InvalidRequest(f"'{slug}' is an {spec.task} model, not a text-to-image one", field="model")
        if not spec.open_weights and slug not in self.model_aliases() and self.route_for(slug) is None:
            raise InvalidRequest(f"'{slug}' has no open weights and no alias or provider here: it can't be the "
                                 "default", field="model")
        self.runtime.set("default_model", slug)

    def _check_default_here(self, spec: ModelSpec) -> None:
        """A request that names no model doesn't start a download of tens of GB in its worker: while the default's
        weights are absent it gets the 503 that says how to pull them, and which models are ready meanwhile."""
        if self.settings.worker == "ray" or self.pipelines.weights_here(spec):
            return  # (Ray replicas may run anywhere in the cluster: their weights are theirs to find)
        ready = [s.slug for s in self.catalog.all() if s.open_weights and self.pipelines.weights_here(s)]
        raise ModelUnavailable(
            f"the default model '{spec.slug}' has no weights on this server yet: an admin pulls them with "
            f"`imagestudio models pull {spec.slug}` (or in the studio, Admin → Models); "
            + (f"models ready here: {', '.join(ready)}" if ready else "no model is ready here yet"), field="model")

    def pull_model(self, slug: str, progress=None, *, events=None, cancel=None, make_default: bool = False):
        """Pull a model's weights from the configured hub (IMAGESTUDIO_HUB_URL) into the models folder; with
        ``make_default``, it becomes the default model once pulled. Returns the folder."""
        path = self.pipelines.pull(slug, progress, events=events, cancel=cancel, hub_url=self.settings.hub_url)
        if make_default:
            self.set_default_model(slug)
        return path

    def model_aliases(self) -> dict[str, str]:
        return dict(self.runtime.get("model_aliases"))

    def set_model_alias(self, slug: str, target: str) -> None:
        self.catalog.check_alias(slug, target)
        self.runtime.set("model_aliases", self.model_aliases() | {slug: target})

    def remove_model_alias(self, slug: str) -> None:
        aliases = self.model_aliases()
        if aliases.pop(slug, None) is None:
            raise NotFound(f"no model alias '{slug}'")
        self.runtime.set("model_aliases", aliases)

    # -- generation --------------------------------------------------------------------------
    def prepare(self, params: GenerationParams) -> ResolvedParams:
        spec, requested, warning = self.resolve_model(params.model)
        resolved = check_inputs(params, spec)
        if requested == spec.slug:
            return resolved
        return dataclasses.replace(resolved, requested_model=requested,
                                   warnings=((warning,) if warning else ()) + resolved.warnings)

    def submit_generation(self, user: User, params: GenerationParams | ResolvedParams, *, store: bool | None = None,
                          kind: str = "generate", init_image: Image.Image | list[Image.Image] | None = None,
                          strength: float = 0.6, mask: Image.Image | None = None, charge_id: str | None = None,
                          cost: int = 0, source_image_id: str | None = None,
                          async_job: AsyncJob | None = None) -> Task:
        """Validate now (errors raise here), then queue; the task's future gives a GenerationResult.

        Text-to-image requests may be batched with compatible ones; edits (``init_image``: one image, or
        several for FLUX.2's references; with ``mask``: inpainting) run alone. ``async_job``: nobody waits for it
        on a connection (a 202): it is kept as data and outlives this process (engine/generation/resumable.py).
        """
        resolved = params if isinstance(params, ResolvedParams) else self.prepare(params)
        init_images = init_image if isinstance(init_image, list) else [init_image] if init_image is not None else None
        spec = self.catalog.get(resolved.model)
        check_edit_inputs(spec, init_images, mask)
        if init_images and spec.edit_uses_strength:
            steps = steps_for_edit(resolved.steps, strength)
            if steps != resolved.steps:
                resolved = dataclasses.replace(resolved, steps=steps, warnings=resolved.warnings + (
                    f"num_inference_steps raised from {resolved.steps} to {steps}: at strength {strength:g} an edit "
                    f"runs int(steps × strength) denoising steps, and fewer than one would change nothing",))
        edit = {"strength": strength if spec.edit_uses_strength else None,
                "source_image_id": source_image_id} if init_images else {}
        job = GenerationJob(user=user, params=resolved, store=self.settings.storage_enabled if store is None else store,
                            kind=kind, charge_id=charge_id, cost=cost, **edit)
        return self._submit(job, async_job, init_images or [], mask, strength)

    def _task_fields(self, job: GenerationJob, images: list[Image.Image], mask: Image.Image | None,
                     strength: float) -> dict:
        """How the worker runs a job: text-to-image batched with compatible ones; edits and cut-outs alone; a
        model the admin routed to a vendor, or a cut-out by Stability, on the provider pool."""
        if job.kind == "remove_background" and job.params.model.startswith("stability:"):
            provider = self.provider("stability")
            if provider is None:  # a resumed job whose provider the admin has removed meanwhile
                raise ProviderUnavailable("Stability AI's background removal is no longer set up on this server")
            return {"run": lambda task: self.jobs.run_remote_cutout(task, job, provider, images[0]), "payload": job,
                    "remote": True}
        route = self.route_for(job.params.model)
        if route is not None:
            if images:
                raise InvalidRequest(f"'{job.params.model}' runs via {route.label} here, which takes text-to-image "
                                     f"requests only: edit with a local model", field="model")
            provider = self.provider(route.provider)
            return {"run": lambda task: self.jobs.run_remote(task, job, provider, route), "payload": job,
                    "remote": True}
        if job.kind == "remove_background":
            remover = self.background_remover()
            return {"run": lambda task: self.jobs.run_background_removal(task, job, remover, images[0]),
                    "payload": job}
        if images:
            return {"run": lambda task: self.jobs.run_edit(task, job, images, strength, mask), "payload": job,
                    "inputs": (images, mask, strength)}
        return {"batch_key": job.params.batch_key(), "run_batch": self.jobs.run_generation_batch, "payload": job,
                "batch_limit": batch_limit(self.device, job.params.width, job.params.height)}

    def upscale_params(self, params: ResolvedParams, factor: float = 2.0) -> ResolvedParams:
        """An upscale ("hires fix") of an image made with ``params``: the same prompt, model and seed at ``factor``
        times the size, run as an edit (kind ``upscale``) of the image resized with ``upscale_input`` at
        ``UPSCALE_STRENGTH``; it works with any model. Raises when the model can't make it bigger."""
        return upscaled(params, self.catalog.get(params.model), factor)

    def presigned_image_url(self, file_path: str) -> str | None:
        """A presigned URL of a stored image's object, when the admin chose them for hosted links; else None (our
        signed link is the link). Signed locally: no request to the storage."""
        if self.settings.hosted_links != "presigned":
            return None
        return self.store.presigned_url(file_path, PRESIGNED_LINK_TTL_S)

    def upscalers_here(self) -> set[str]:
        """The x4 upscalers whose weights are on this machine (blocking: looks at the disk)."""
        return {spec.slug for spec in self.catalog.all(helpers=True)
                if spec.task == "upscale" and self.pipelines.weights_here(spec)}

    def x4_upscale_params(self, params: ResolvedParams) -> ResolvedParams:
        """A pass of the diffusers x4 upscaler over an image made with ``params`` (kind ``upscale``, the image as
        it is for its input); only where the upscaler's weights are here, and for images of up to a quarter of its
        largest output. ``upscale_params`` works with any model."""
        upscaler = self.catalog.upscaler_for(self.catalog.get(params.model))
        if not self.pipelines.weights_here(upscaler):
            raise ModelUnavailable(f"{upscaler.name} is not on this machine; an admin can fetch it with "
                                   f"`imagestudio models pull {upscaler.slug}`, or upscale ×2 with any model")
        return upscaled_x4(params, upscaler)

    def _submit(self, job: GenerationJob, async_job: AsyncJob | None, images: list[Image.Image],
                mask: Image.Image | None, strength: float) -> Task:
        """The job's row first (with an async job's request and its inputs kept), then the worker's queue."""
        row = Job(user_id=job.user.id, kind=job.kind, params=job.params.as_dict(), process_id=self.identity.id,
                  lease_expires_at=utcnow() + LEASE)
        refs: list[str] = []
        if async_job is not None:
            inputs, mask_ref = input_refs(row.id, len(images), mask is not None)
            for ref, image in zip(inputs, images, strict=True):
                self.inputs.put(ref, png_bytes(image))
            if mask_ref:
                self.inputs.put(mask_ref, png_bytes(mask))
            refs = inputs + ([mask_ref] if mask_ref else [])
            row.request = job_request(job, async_job, inputs, mask_ref, strength)
        with session_scope(self.db) as session:
            session.add(row)
            session.commit()
        try:
            task = Task(id=row.id, owner=job.user.id, **self._task_fields(job, images, mask, strength))
            task = (self.remote if task.remote else self.worker).submit(task)
        except EngineError as exc:
            self.jobs.update_job(row.id, status=JobStatus.FAILED, error=exc.message, finished_at=utcnow())
            self._forget_inputs(refs)
            raise
        if refs:
            task.future.add_done_callback(lambda _future: self._forget_inputs(refs))
        return task

    def live_task(self, job_id: str) -> Task | None:
        """The task of a job that this process runs (on the GPU worker or the provider pool)."""
        return self.worker.get(job_id) or self.remote.get(job_id)

    # -- providers ---------------------------------------------------------------------------
    def provider(self, name: str) -> Provider | None:
        """The configured provider ``name`` (None without a key); one HTTP client per configuration."""
        config = provider_config(self.runtime.get(f"provider_{name}"), name)
        if config is None:
            return None
        known = self._providers.get(name)
        if known is None or known[0] != config:  # first use, or the admin changed it
            known = self._providers[name] = (config, make_provider(name, config))
        return known[1]

    def route_for(self, slug: str) -> Route | None:
        """Where ``slug`` runs at a vendor: a proprietary slug once its vendor has a key (unless the admin turned
        the route off), an open one only if the admin routed it there and its weights are not here."""
        if slug not in VENDOR_MODELS:
            return None
        name = (DEFAULT_ROUTES | self.runtime.get("provider_routes")).get(slug)
        vendor, vendor_model = VENDOR_MODELS[slug]
        if name != vendor or self.provider(name) is None:
            return None
        spec = self.catalog.get(slug)
        if spec.open_weights and self.pipelines.weights_here(spec):
            return None
        price = self.runtime.get("provider_prices").get(slug) or DEFAULT_PRICES[slug]
        return Route(provider=name, vendor_model=vendor_model, price=(int(price[0]), int(price[1])))

    def credits_for(self, params: ResolvedParams) -> int:
        """What one image of these parameters costs: the model's price at its size, a vendor route's if it has
        one (blocking: the catalog and the settings)."""
        route = self.route_for(params.model)
        if route is not None:
            return route.price[0] if params.width * params.height <= SMALL_PIXELS else route.price[1]
        return generation_credits(self.catalog.get(params.model), params.width, params.height)

    def test_provider(self, name: str) -> str:
        """The provider's own account check (Admin → Providers → Test): what it says, or a domain error."""
        provider = self.provider(name)
        if provider is None:
            raise InvalidRequest(f"{LABELS[name]} has no API key yet", field="api_key")
        return provider.test()

    def _forget_inputs(self, refs: list[str]) -> None:
        for ref in refs:
            try:
                self.inputs.delete(ref)
            except StorageError:  # housekeeping removes what is left after a day
                log.warning("could not delete the input image %s", ref)

    def authenticate(self, token: str) -> tuple[User, str]:
        """The user behind an API key or a session token, and the key's prefix for the log ("session" for a token).
        Read without the write lock; the key's last use is bookkeeping, skipped while the database is busy."""
        with read_scope(self.db) as session:
            if not token.startswith(KEY_PREFIX):
                return user_from_access_token(session, token, self.keys.session_tokens), "session"
            user, key = authenticate_key(session, token)
        if key_use_is_stale(key):
            try:
                with session_scope(self.db) as session:
                    record_key_use(session, key.id)
            except DatabaseBusy:
                log.info("the last use of key %s was not recorded: the database is busy", key.prefix)
        return user, key.prefix

    def sign_in(self, email: str, password: str, address: str) -> User:
        """Email + password sign-in for the API and the studio alike, throttled against guessing."""
        stamp = self.login_throttle.attempt(email, address)
        with session_scope(self.db) as session:
            user = authenticate_password(session, email, password)  # a failure stays counted
        self.login_throttle.succeeded(email, address, stamp)
        return user

    def job(self, job_id: str, user_id: str) -> Job:
        """The job ``job_id`` of ``user_id``; another user's job is indistinguishable from a missing one."""
        with read_scope(self.db) as session:
            job = session.get(Job, job_id)
        if job is None or job.user_id != user_id:
            raise NotFound(f"no job '{job_id}'")
        return job

    def job_progress(self, job: Job) -> tuple[int, int] | None:
        """(step, total) of a running job: live from this process's worker, else what the process that runs it
        last wrote (about once a second)."""
        task = self.live_task(job.id)
        if task is not None:
            return task.step, task.total
        if job.progress_total:
            return job.progress_step or 0, job.progress_total
        return None

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a queued job at once (recorded as cancelled, refunded) or a running one at its next step. A job
        another process runs is asked to stop through its row: that process cancels it at its next progress
        write (running) or heartbeat (queued)."""
        pool = self.remote if self.remote.get(job_id) is not None else self.worker
        if pool.get(job_id) is None:
            with session_scope(self.db) as session:
                asked = session.execute(update(Job).where(
                    Job.id == job_id, col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                    Job.process_id != self.identity.id).values(cancel_requested=True)).rowcount
                session.commit()
            return asked > 0
        if not pool.cancel(job_id):
            return False
        task = pool.get(job_id)
        if task is not None and task.future.done():  # it never started: nobody else will record it
            self.jobs.update_job(job_id, status=JobStatus.CANCELLED, error="the job was cancelled",
                                 finished_at=utcnow())
        return True

    def _cancel_requested_elsewhere(self) -> None:
        """Queued jobs of this process that another process asked to cancel (running ones see it themselves)."""
        with read_scope(self.db) as session:
            asked = session.exec(select(Job.id).where(Job.process_id == self.identity.id, Job.cancel_requested,
                                                      Job.status == JobStatus.QUEUED)).all()
        for job_id in asked:
            self.cancel_job(job_id)

    def generate(self, user: User, params: GenerationParams, **kwargs) -> GenerationResult:
        """Blocking convenience for the CLI and tests."""
        return self.submit_generation(user, params, **kwargs).future.result()

    def submit_background_removal(self, user: User, image: Image.Image, *, prompt: str = "",
                                  store: bool | None = None, charge_id: str | None = None, cost: int = 0,
                                  async_job: AsyncJob | None = None) -> Task:
        """Cut out the subject of ``image`` (rembg) on the worker; the result is a transparent PNG."""
        if self._stability_cutouts():
            model = "stability:remove-background"  # the admin's choice: Stability AI's engine, as the seed names
        else:
            remover = self.background_remover()
            remover.load()  # a missing model file fails now, before anything is queued or charged
            model = f"rembg:{remover.model_name}"
        params = ResolvedParams(prompt=prompt or "remove background", negative_prompt=None, model=model,
                                width=image.width, height=image.height, steps=0, guidance_scale=0.0, seed=0)
        job = GenerationJob(user=user, params=params, kind="remove_background",
                            store=self.settings.storage_enabled if store is None else store,
                            charge_id=charge_id, cost=cost)
        return self._submit(job, async_job, [image], None, 0.0)

    def can_remove_backgrounds(self) -> bool:
        """Whether a cut-out can run: Stability AI chosen and set up, or rembg's model file here."""
        return self._stability_cutouts() or self.background_remover().available()

    def _stability_cutouts(self) -> bool:
        """The admin chose Stability AI for background removal, and it has a key."""
        return self.runtime.get("background_removal") == "stability" and self.provider("stability") is not None

    def background_remover(self):
        if self._background_remover is None:
            from engine.tools.background import BackgroundRemover

            self._background_remover = BackgroundRemover(self.settings.models_dir)
        return self._background_remover

    def guard_prompt_tools(self, workspace_id: str) -> None:
        """Prompt tools are free and outside the quotas; only their own per-minute guard applies (429 past it)."""
        self.meter.guard_prompt_tools(workspace_id, self.settings.prompt_tools_per_minute)

    def enhance_prompt(self, workspace_id: str, prompt: str, tone: str | None = None):
        """A richer prompt for the API and the studio alike (blocking: a text model may take seconds)."""
        self.guard_prompt_tools(workspace_id)
        return self.prompt_enhancer().enhance(prompt, tone)

    def prompt_enhancer(self):
        """The enhancer for the admin's chosen text model (rebuilt when that choice changes)."""
        from engine.tools.prompts import PromptEnhancer, TextModelConfig

        config = self.runtime.get("text_model") or {"provider": "builtin"}
        key = repr(sorted(config.items()))
        if self._enhancer is None or self._enhancer[0] != key:
            fields = {k: v for k, v in config.items() if k in TextModelConfig.__dataclass_fields__}
            self._enhancer = (key, PromptEnhancer(TextModelConfig(**fields), http_client=self.text_model_http))
        return self._enhancer[1]

    # -- health ------------------------------------------------------------------------------
    def _probe_device(self) -> str:
        """A tiny tensor op on the device, with a deadline: a wedged or lost GPU says so here, not in the next
        generation. It runs on a daemon thread of its own beside the worker; a probe that never returns is
        reported (and not repeated while it hangs), never waited for."""
        with self._probe_lock:
            # Health checks at the same moment share one probe; one that outlived its deadline is stuck.
            started, future = self._probe or (0.0, None)
            fresh = future is not None and (not future.done() or time.monotonic() - started < PROBE_REUSE_S)
            if not fresh:
                future, started = Future(), time.monotonic()
                self._probe = (started, future)
        if fresh:
            if not future.done() and time.monotonic() - started > DEVICE_PROBE_TIMEOUT_S:
                return "error"  # the last probe is still stuck on the device
            return self._probe_outcome(future, started)

        def probe() -> None:
            try:
                value = (torch.ones(4, device=self.device) * 2).sum().item()
                if self.device == "cuda":
                    torch.cuda.synchronize()
                future.set_result(value)
            except RuntimeError as exc:  # torch reports device faults (CUDA errors, lost devices) so
                future.set_exception(exc)

        threading.Thread(target=probe, name="imagestudio-device-probe", daemon=True).start()
        return self._probe_outcome(future, started)

    def _probe_outcome(self, future: Future, started: float) -> str:
        try:
            remaining = max(0.0, DEVICE_PROBE_TIMEOUT_S - (time.monotonic() - started))
            return "ok" if future.result(timeout=remaining) == 8.0 else "error"
        except TimeoutError:
            log.error("health: the %s device did not answer a probe within %g s", self.device, DEVICE_PROBE_TIMEOUT_S)
            return "error"
        except RuntimeError as exc:
            log.error("health: the %s device probe failed: %s", self.device, exc)
            return "error"

    def health(self) -> dict:
        checks: dict[str, dict] = {}
        try:
            with self.db.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = {"status": "ok"}
        except Exception as exc:  # health must report, not raise
            checks["database"] = {"status": "error", "detail": exc.__class__.__name__}
        checks["storage"] = {"status": "ok" if self.store.writable() else "error",
                             "enabled": bool(self.runtime.get("storage_enabled"))}
        checks["device"] = {"status": self._probe_device(), "device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
                            "loaded_models": [p.spec.slug for p in self.pipelines.loaded()],
                            "loaded_bytes": self.pipelines.used_bytes(),
                            "budget_bytes": self.pipelines.budget_bytes}
        if self.device == "cuda":
            checks["device"] |= {"gpu": torch.cuda.get_device_name(0),
                                 "gpu_allocated_bytes": torch.cuda.memory_allocated(),
                                 "gpu_reserved_bytes": torch.cuda.memory_reserved()}
        running = [task.started_at for task in self.worker.current if task.started_at]
        checks["worker"] = {"status": "ok" if self.worker.alive else "error", "queue_depth": self.worker.depth(),
                            "busy": bool(self.worker.current), "batches": self.worker.batches,
                            "busy_for_s": round(time.time() - min(running), 1) if running else 0.0}
        healthy = all(c["status"] == "ok" for c in checks.values())
        return {"status": "healthy" if healthy else "degraded", "checks": checks}
