"""GPU workers on Ray Serve (``IMAGESTUDIO_WORKER=ray``, the ``ray`` extra): the pipeline calls run on replicas of a
deployment per model family, anywhere in a Ray cluster; everything else stays in the API process.

Split of the work: the API process admits, writes the job row, and records the result (the image in the store,
the record, the job's success and the bill in one transaction, ``JobRunner.complete``), exactly as with the
in-process worker. A replica only turns parameters into PNG bytes: it loads pipelines lazily under its own
memory budget (``PipelineManager``), runs them with ``run_pipeline`` and encodes with ``encode_png``, the same
functions as in-process, so a seed gives the same bytes either way. Text-to-image requests go through
``@serve.batch``: compatible ones that arrive together (same batch key) run as one pipeline call.

Progress and cancel cross the cluster through one named actor, the ``JobBoard``: a replica reports each step
there and reads whether its jobs were cancelled (once a step: a cancel takes effect at the next step, or at once
for a job still queued in this process). A replica that dies mid-job (SIGKILL, an out-of-memory kill) fails the
call: the job is sent once more (Serve has started a new replica meanwhile), then failed, and the caller's
admission refunds it; nothing is charged twice, since only ``complete`` charges.

Background removal (rembg, a small ONNX model on the CPU) stays in the API process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from engine.errors import GenerationFailed, JobCancelled, QueueFull
from engine.generation.catalog import ModelSpec
from engine.generation.worker import LocalWorker, Task

log = logging.getLogger(__name__)

NAMESPACE = "imagestudio"
BOARD = "imagestudio-job-board"
ATTEMPTS = 2  # a replica that dies takes the job with it: sent once more, then failed
PROGRESS_POLL_S = 0.5


@dataclass(frozen=True)
class ReplicaConfig:
    """What each replica needs to load and run pipelines (picklable: it travels to the replica)."""

    models_dir: str
    device: str  # "cuda" or "cpu" (on the replica's node)
    dtype: str  # "float32", "float16", "bfloat16"
    budget_bytes: int
    allow_downloads: bool
    channels_last: bool
    cpu_threads: int
    max_batch: int
    batch_window_s: float


class JobBoard:
    """A Ray actor: each running job's progress, and which jobs were cancelled; shared by API processes and
    replicas."""

    def __init__(self):
        self.progress: dict[str, tuple[int, int]] = {}
        self.cancelled: set[str] = set()
        self.replicas: dict[str, int] = {}  # replica name -> process id (for operators and tests)

    def report(self, job_id: str, step: int, total: int) -> None:
        self.progress[job_id] = (step, total)

    def read(self, job_ids: list[str]) -> dict[str, tuple[int, int]]:
        return {job_id: self.progress[job_id] for job_id in job_ids if job_id in self.progress}

    def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)

    def cancelled_among(self, job_ids: list[str]) -> list[str]:
        return [job_id for job_id in job_ids if job_id in self.cancelled]

    def forget(self, job_id: str) -> None:
        self.progress.pop(job_id, None)
        self.cancelled.discard(job_id)

    def register(self, name: str, pid: int) -> None:
        self.replicas[name] = pid

    def replica_pids(self) -> dict[str, int]:
        return dict(self.replicas)


class _SpecBook:
    """The catalog of a replica: the specs its requests brought (custom models live in the API's database)."""

    def __init__(self):
        self.specs: dict[str, ModelSpec] = {}

    def remember(self, spec: ModelSpec) -> None:
        self.specs[spec.slug] = spec

    def get(self, slug: str) -> ModelSpec:
        return self.specs[slug]


class FamilyGenerator:
    """A Serve deployment's replica: pipelines of one model family on one GPU (or CPU)."""

    def __init__(self, config: ReplicaConfig):
        import ray
        import torch

        from engine.generation.device import tune_malloc
        from engine.generation.pipelines import PipelineManager

        tune_malloc()  # the replica's pipelines run on Serve's threads: engine/generation/device.py
        if config.device == "cpu" and config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        self.book = _SpecBook()
        self.pipelines = PipelineManager(self.book, config.models_dir, config.device, getattr(torch, config.dtype),
                                         config.budget_bytes, allow_downloads=config.allow_downloads,
                                         channels_last=config.channels_last)
        self.board = ray.get_actor(BOARD, namespace=NAMESPACE)
        context = ray.get_runtime_context()
        self.board.register.remote(context.get_actor_name() or context.get_actor_id(), os.getpid())
        self._lock = threading.Lock()  # one pipeline call at a time on this device

    def _call(self, requests: list[dict]) -> list[bytes]:
        """One pipeline call for requests of one batch key; their PNG bytes, in order."""
        import ray

        from engine.generation.params import ResolvedParams, encode_png, run_pipeline
        from engine.generation.png import decoded

        first = requests[0]
        spec: ModelSpec = first["spec"]
        self.book.remember(spec)
        job_ids = [request["job_id"] for request in requests]
        params = [ResolvedParams(**request["params"]) for request in requests]
        stop = threading.Event()

        def on_step(step: int, total: int) -> bool:
            for job_id in job_ids:
                self.board.report.remote(job_id, step, total)
            if len(ray.get(self.board.cancelled_among.remote(job_ids))) == len(job_ids):
                stop.set()  # every request of the call was cancelled
            return not stop.is_set()

        with self._lock:
            if first.get("images"):
                pipe = (self.pipelines.inpaint_pipe(spec) if first.get("mask")
                        else self.pipelines.get(spec.slug).edit_pipe())
                images = run_pipeline(pipe, spec, params, on_step=on_step,
                                      init_images=[decoded(data) for data in first["images"]],
                                      strength=first["strength"], should_stop=stop.is_set,
                                      mask=decoded(first["mask"]) if first.get("mask") else None)
            else:
                pipe = self.pipelines.get(spec.slug).pipe
                images = run_pipeline(pipe, spec, params, on_step=on_step, should_stop=stop.is_set)
        if stop.is_set():
            raise JobCancelled("the job was cancelled")
        return [encode_png(image, p, request["extra"]) for image, p, request in zip(images, params, requests,
                                                                                      strict=True)]

    async def generate_batched(self, requests: list[dict]) -> list:
        """Requests that arrived together, grouped by batch key: one call per group, results in order."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[request["batch_key"]].append(index)
        results: list = [None] * len(requests)
        for indexes in groups.values():
            try:
                pngs = await asyncio.to_thread(self._call, [requests[i] for i in indexes])
            except Exception as exc:  # noqa: BLE001  (not hidden: each caller of the group gets it raised)
                pngs = [exc] * len(indexes)
            for index, png in zip(indexes, pngs, strict=True):
                results[index] = png
        return results

    async def generate(self, requests: list[dict]):  # wrapped by serve.batch in deployment()
        return await self.generate_batched(requests)

    async def edit(self, request: dict) -> bytes:
        return (await asyncio.to_thread(self._call, [request]))[0]

    async def __call__(self, request: dict):
        """One request: an edit alone, text-to-image through the batch."""
        if request.get("images"):
            return await self.edit(request)
        result = await self.generate(request)
        if isinstance(result, Exception):
            raise result
        return result


def deployment(family: str, config: ReplicaConfig, *, num_gpus: float, num_cpus: float, min_replicas: int,
               max_replicas: int):
    """The Serve application of one model family."""
    from ray import serve

    cls = type(f"Generator_{family.replace('-', '_')}", (FamilyGenerator,), {
        "generate": serve.batch(max_batch_size=max(1, config.max_batch),
                                batch_wait_timeout_s=config.batch_window_s)(FamilyGenerator.generate)})
    options: dict = {"name": f"generator-{family}", "ray_actor_options": {"num_gpus": num_gpus, "num_cpus": num_cpus},
                     "max_ongoing_requests": max(8, 2 * config.max_batch)}
    if max_replicas > min_replicas:
        options["autoscaling_config"] = {"min_replicas": min_replicas, "max_replicas": max_replicas,
                                         "target_ongoing_requests": max(1, config.max_batch)}
    else:
        options["num_replicas"] = min_replicas
    return serve.deployment(cls).options(**options).bind(config)


class RayWorker:
    """The worker interface of LocalWorker (submit, get, cancel, depth...) in front of the Serve replicas."""

    def __init__(self, runner, config: ReplicaConfig, *, address: str | None, num_gpus: float, num_cpus: float,
                 min_replicas: int, max_replicas: int, max_queue: int = 1000):
        self.runner, self.config, self.address = runner, config, address
        self.placement = {"num_gpus": num_gpus, "num_cpus": num_cpus, "min_replicas": min_replicas,
                          "max_replicas": max_replicas}
        self.max_queue = max_queue
        self.local = LocalWorker(max_queue=max_queue)  # background removal stays here
        self._tasks: dict[str, Task] = {}
        self._handles: dict[str, object] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="imagestudio-ray")
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self.board = None
        self.current: list[Task] = []
        self.completed = 0
        self.batches = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, namespace=NAMESPACE, ignore_reinit_error=True, log_to_driver=False,
                     **({} if self.address else {"include_dashboard": False}))
        self.board = ray.remote(JobBoard).options(name=BOARD, namespace=NAMESPACE, get_if_exists=True,
                                                  lifetime="detached", num_cpus=0).remote()
        self.local.start()
        self._stopping.clear()
        self._poller = threading.Thread(target=self._poll_progress, name="imagestudio-ray-progress", daemon=True)
        self._poller.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.local.stop(timeout)
        with self._lock:
            pending = [task for task in self._tasks.values() if not task.future.done()]
        for task in pending:
            task.cancel_event.set()
            task.finish(error=JobCancelled("the server is shutting down"))
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self.board is not None and not self._stopping.is_set()

    def depth(self) -> int:
        with self._lock:
            return sum(1 for task in self._tasks.values() if task.status == "queued") + self.local.depth()

    # -- tasks -------------------------------------------------------------------------------
    def submit(self, task: Task) -> Task:
        job = task.payload
        if job is None or job.kind == "remove_background":
            return self.local.submit(task)
        if self._stopping.is_set():
            raise QueueFull("the server is shutting down")
        with self._lock:
            if len(self._tasks) >= self.max_queue:
                raise QueueFull(f"the generation queue is full ({self.max_queue} jobs); try again shortly")
            self._tasks[task.id] = task
        self._pool.submit(self._run, task)
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id) or self.local.get(task_id)

    def cancel(self, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        if task is None:
            return self.local.cancel(task_id)
        if task.future.done():
            return False
        task.cancel_event.set()
        self.board.cancel.remote(task_id)
        return True

    # -- running -----------------------------------------------------------------------------
    def _handle(self, spec: ModelSpec):
        """The deployment handle of the spec's family, deploying it on first use (another process may have)."""
        from ray import serve
        from ray.serve.exceptions import RayServeException

        family = spec.family
        with self._lock:
            handle = self._handles.get(family)
        if handle is not None:
            return handle
        name = f"imagestudio-{family}"
        try:
            handle = serve.get_app_handle(name)
        except RayServeException:  # not deployed yet (serve deploy with deploy/ray-serve.yaml does it ahead)
            handle = serve.run(deployment(family, self.config, **self.placement), name=name, route_prefix=None)
        with self._lock:
            self._handles[family] = handle
        return handle

    def _request(self, task: Task) -> dict:
        from engine.generation.resumable import png_bytes

        job = task.payload
        spec = self.runner.pipelines.catalog.get(job.params.model)
        request = {"job_id": task.id, "spec": spec, "params": job.params.as_dict(), "extra": job.png_extra(),
                   "batch_key": job.params.batch_key()}
        if task.inputs is not None:
            images, mask, strength = task.inputs
            request.update(images=[png_bytes(image) for image in images], strength=strength,
                           mask=png_bytes(mask) if mask is not None else None)
        return request

    def _run(self, task: Task) -> None:
        from ray.exceptions import RayActorError

        job = task.payload
        try:
            if task.cancelled:
                raise JobCancelled("the job was cancelled")
            request = self._request(task)
            handle = self._handle(request["spec"])
            self.runner.mark_running(task)
            task.status, task.started_at = "running", time.monotonic()
            started = time.perf_counter()
            for attempt in range(ATTEMPTS):
                try:
                    png = handle.remote(request).result()
                    break
                except RayActorError as exc:
                    log.warning("the replica running job %s died (attempt %d)", task.id, attempt + 1)
                    if attempt == ATTEMPTS - 1:
                        raise GenerationFailed(f"the GPU worker running job {task.id} stopped twice; "
                                               "it was not charged") from exc
            if task.cancelled:
                raise JobCancelled("the job was cancelled")
            task.finish(result=self.runner.complete(task, job, png, started))
        except BaseException as exc:  # noqa: BLE001  (the future carries it to the caller, as LocalWorker's)
            task.finish(error=self.runner.failed(task, _unwrapped(exc)))
        finally:
            self.completed += 1
            self.batches += 1
            self.board.forget.remote(task.id)
            with self._lock:
                self._tasks.pop(task.id, None)

    def _poll_progress(self) -> None:
        """The replicas' step reports into the tasks (and so the job rows, about once a second)."""
        import ray

        from engine.generation.jobs import ProgressSync

        syncs: dict[str, ProgressSync] = {}
        while not self._stopping.wait(PROGRESS_POLL_S):
            with self._lock:
                running = [task for task in self._tasks.values() if task.status == "running"]
            self.current = running
            if not running:
                continue
            try:
                progress = ray.get(self.board.read.remote([task.id for task in running]), timeout=5)
            except Exception as exc:  # noqa: BLE001  (a busy cluster: the next poll tries again)
                log.debug("progress poll failed: %s", exc)
                continue
            for task in running:
                if task.id in progress:
                    step, total = progress[task.id]
                    task.report(step, total)
                    sync = syncs.setdefault(task.id, ProgressSync(self.runner.db, [task]))
                    sync.step(step, total)
            for job_id in [job_id for job_id in syncs if job_id not in {task.id for task in running}]:
                del syncs[job_id]


def _unwrapped(exc: BaseException) -> BaseException:
    """A replica's exception arrives wrapped in Ray's RayTaskError: the domain error inside, when it is one."""
    cause = getattr(exc, "cause", None)
    if cause is not None and isinstance(cause, (JobCancelled, GenerationFailed)):
        return cause
    from engine.errors import EngineError

    if isinstance(cause, EngineError):
        return cause
    return exc


def build_app(args: dict):
    """The application of one family for `serve deploy` (deploy/ray-serve.yaml): deployed ahead by an operator
    instead of on first use by an API process, which then finds it by name (``imagestudio-<family>``)."""
    config = ReplicaConfig(models_dir=args["models_dir"], device=args.get("device", "cuda"),
                           dtype=args.get("dtype", "float16"), budget_bytes=int(float(args.get("budget_gb", 20)) * 2**30),
                           allow_downloads=bool(args.get("allow_downloads", True)),
                           channels_last=bool(args.get("channels_last", True)), cpu_threads=int(args.get("cpu_threads", 0)),
                           max_batch=int(args.get("max_batch", 8)),
                           batch_window_s=float(args.get("batch_window_ms", 15)) / 1000)
    return deployment(args["family"], config, num_gpus=float(args.get("num_gpus", 1)),
                      num_cpus=float(args.get("num_cpus", 1)), min_replicas=int(args.get("min_replicas", 1)),
                      max_replicas=int(args.get("max_replicas", 1)))
