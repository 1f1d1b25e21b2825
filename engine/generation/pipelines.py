"""Lazy loading of diffusers pipelines under a memory budget (least recently used out)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.errors import ModelUnavailable
from engine.generation.catalog import Catalog, ModelSpec
from engine.generation.tiny_models import ensure_tiny_model

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (done, total)

# diffusers imports its classes lazily, and two threads importing the same one at once can see a half-made
# module: every class lookup goes through this lock.
_IMPORT_LOCK = threading.Lock()


def diffusers_class(name: str):
    with _IMPORT_LOCK:
        import diffusers

        return getattr(diffusers, name)


class WeightsState:
    LOADED = "loaded"  # in memory now
    READY = "ready"  # weights on this machine
    DOWNLOADABLE = "downloadable"  # open weights, fetched from the hub on first use or by `models pull`
    UNAVAILABLE = "unavailable"  # no open weights, or not here and downloads are off


@dataclass
class LoadedPipeline:
    spec: ModelSpec
    pipe: object
    bytes: int
    load_seconds: float
    last_used: float = field(default_factory=time.monotonic)
    _edit_pipe: object | None = None
    _inpaint_pipe: object | None = None

    def inpaint_pipe(self):
        """The inpainting variant, sharing this pipeline's modules (no extra memory)."""
        if self._inpaint_pipe is None:
            cls_name = self.spec.inpaint_pipeline_class
            if cls_name is None:
                raise ModelUnavailable(f"model '{self.spec.slug}' has no inpainting pipeline")
            self._inpaint_pipe = diffusers_class(cls_name).from_pipe(self.pipe)
            self._inpaint_pipe.set_progress_bar_config(disable=True)  # from_pipe doesn't carry it over
        return self._inpaint_pipe

    def edit_pipe(self):
        """The image-to-image variant, sharing this pipeline's modules (no extra memory)."""
        if self._edit_pipe is None:
            cls_name = self.spec.edit_pipeline_class
            if cls_name is None:
                raise ModelUnavailable(f"model '{self.spec.slug}' has no image-to-image pipeline")
            if cls_name == type(self.pipe).__name__:
                self._edit_pipe = self.pipe
            else:
                self._edit_pipe = diffusers_class(cls_name).from_pipe(self.pipe)
                self._edit_pipe.set_progress_bar_config(disable=True)  # from_pipe doesn't carry it over
        return self._edit_pipe


def module_bytes_of(component) -> int:
    if not isinstance(component, torch.nn.Module):
        return 0
    return (sum(t.numel() * t.element_size() for t in component.parameters())
            + sum(t.numel() * t.element_size() for t in component.buffers()))


def module_bytes(pipe) -> int:
    return sum(module_bytes_of(c) for c in getattr(pipe, "components", {}).values())


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


class PipelineManager:
    COMPILE_MODE = "max-autotune-no-cudagraphs"  # the denoiser's torch.compile mode (bench/gpu.py times it)

    def __init__(self, catalog: Catalog, models_dir: Path, device: str, dtype: torch.dtype,
                 budget_bytes: int, allow_downloads: bool = True, compile: bool = False,
                 channels_last: bool = True):
        self.compile = compile
        self.channels_last = channels_last
        self.catalog = catalog
        self.models_dir = Path(models_dir)
        self.device = device
        self.dtype = dtype
        self.budget_bytes = budget_bytes
        self.allow_downloads = allow_downloads
        self._loaded: OrderedDict[str, LoadedPipeline] = OrderedDict()
        self._lock = threading.Lock()  # guards _loaded and _load_locks
        self._load_locks: dict[str, threading.Lock] = {}

    # -- state -------------------------------------------------------------------------------
    def local_folder(self, spec: ModelSpec) -> Path | None:
        if spec.local_path:
            return Path(spec.local_path)
        folder = self.models_dir / spec.slug
        return folder if (folder / "model_index.json").exists() else None

    def state(self, spec: ModelSpec) -> tuple[str, str | None]:
        """(state, reason) for the catalog listing."""
        if spec.slug in self._loaded:
            return WeightsState.LOADED, None
        if not spec.open_weights:
            return WeightsState.UNAVAILABLE, spec.unavailable_reason
        if spec.tiny:
            return WeightsState.READY, None
        if spec.local_path:
            if (Path(spec.local_path) / "model_index.json").exists():
                return WeightsState.READY, None
            return WeightsState.UNAVAILABLE, f"local folder {spec.local_path} has no model_index.json"
        if self.local_folder(spec) or self._in_hub_cache(spec):
            return WeightsState.READY, None
        if self.downloads_possible():
            return WeightsState.DOWNLOADABLE, f"weights are fetched from {spec.repo_id} on first use"
        return WeightsState.UNAVAILABLE, self._absent_message(spec)

    def weights_here(self, spec: ModelSpec) -> bool:
        """Whether the model can run without a download (blocking: looks at the disk)."""
        return self.state(spec)[0] in (WeightsState.LOADED, WeightsState.READY)

    def inpaint_pipe(self, spec: ModelSpec):
        """The pipeline that inpaints for ``spec``: its dedicated inpainting checkpoint when those weights are here
        (the mask is an input of that UNet: seamless repaints), else its own weights in the family's inpaint
        pipeline (the mask blended into the latents each step)."""
        if spec.inpaint_model:
            checkpoint = self.catalog.get(spec.inpaint_model)
            if self.weights_here(checkpoint):
                return self.get(checkpoint.slug).pipe
        return self.get(spec.slug).inpaint_pipe()

    def downloads_possible(self) -> bool:
        return self.allow_downloads and not hub_offline()

    def _in_hub_cache(self, spec: ModelSpec) -> bool:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(spec.repo_id, "model_index.json"), str)

    def _absent_message(self, spec: ModelSpec) -> str:
        return (f"weights for '{spec.slug}' ({spec.repo_id}) are not on this machine; "
                f"run `imagestudio models pull {spec.slug}` where the hub is reachable")

    def loaded(self) -> list[LoadedPipeline]:
        with self._lock:
            return list(self._loaded.values())

    def used_bytes(self) -> int:
        with self._lock:
            return sum(p.bytes for p in self._loaded.values())

    # -- loading -----------------------------------------------------------------------------
    def get(self, slug: str) -> LoadedPipeline:
        """The loaded pipeline for ``slug``, loading it first if needed (one load at a time per model)."""
        with self._lock:
            entry = self._loaded.get(slug)
            if entry is not None:
                self._loaded.move_to_end(slug)
                entry.last_used = time.monotonic()
                return entry
            load_lock = self._load_locks.setdefault(slug, threading.Lock())
        with load_lock:
            with self._lock:
                if slug in self._loaded:  # another thread loaded it while we waited
                    return self._loaded[slug]
            entry = self._load(self.catalog.get(slug))
            with self._lock:
                self._loaded[slug] = entry
                self._evict_over_budget(keep=slug)
            return entry

    def unload(self, slug: str) -> bool:
        with self._lock:
            entry = self._loaded.pop(slug, None)
        if entry is not None:
            self._free(entry)
        return entry is not None

    def _evict_over_budget(self, keep: str) -> None:
        # Caller holds self._lock.
        while sum(p.bytes for p in self._loaded.values()) > self.budget_bytes and len(self._loaded) > 1:
            oldest = next(slug for slug in self._loaded if slug != keep)
            log.info("evicting %s to stay under the memory budget", oldest)
            self._free(self._loaded.pop(oldest))

    def _free(self, entry: LoadedPipeline) -> None:
        entry.pipe = None
        entry._edit_pipe = entry._inpaint_pipe = None
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def _source(self, spec: ModelSpec) -> tuple[str, bool]:
        """Where from_pretrained reads from, and whether it may only use local files."""
        if not spec.open_weights:
            raise ModelUnavailable(f"'{spec.slug}' is a {spec.unavailable_reason}")
        if spec.tiny:
            return str(ensure_tiny_model(spec.slug, self.models_dir)), True
        folder = self.local_folder(spec)
        if folder is not None:
            if not (folder / "model_index.json").exists():
                raise ModelUnavailable(f"local folder {folder} for '{spec.slug}' has no model_index.json")
            return str(folder), True
        return spec.repo_id, not self.downloads_possible()

    def _load(self, spec: ModelSpec) -> LoadedPipeline:
        source, local_only = self._source(spec)
        started = time.perf_counter()
        pipeline_cls = diffusers_class(spec.pipeline_class)
        try:
            pipe = pipeline_cls.from_pretrained(source, dtype=self.dtype, local_files_only=local_only)
        except (OSError, EnvironmentError) as exc:
            # from_pretrained raises OSError/EnvironmentError when files are absent or unreachable.
            raise ModelUnavailable(self._absent_message(spec) + f" ({exc.__class__.__name__})") from exc
        if spec.unet_weights:
            self._swap_unet(pipe, spec, local_only)
        if spec.scheduler:
            scheduler_cls = diffusers_class(spec.scheduler)
            pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, **spec.scheduler_config)
        pipe.set_progress_bar_config(disable=True)
        resident = self._place(pipe, spec)
        elapsed = time.perf_counter() - started
        log.info("loaded %s from %s in %.2fs", spec.slug, source, elapsed)
        return LoadedPipeline(spec=spec, pipe=pipe, bytes=resident, load_seconds=elapsed)

    def _place(self, pipe, spec: ModelSpec) -> int:
        """Move the pipeline to the device with the fast-path settings; returns the bytes it keeps there."""
        total = module_bytes(pipe)
        # Attention already runs on PyTorch SDPA (diffusers' default processor on torch 2).
        if self.device == "cuda" and total > self.budget_bytes:
            # Too big to keep whole: each component visits the GPU only while it runs.
            log.warning("%s needs %.1f GiB, over the %.1f GiB budget: using model CPU offload",
                        spec.slug, total / 2**30, self.budget_bytes / 2**30)
            pipe.enable_model_cpu_offload()
            return max(module_bytes_of(c) for c in pipe.components.values())
        pipe.to(self.device)
        if getattr(pipe, "vae", None) is not None and hasattr(pipe.vae, "enable_slicing"):
            # Decode a batch one image at a time: same pixels, lower peak memory, and on CPU faster
            # too (a batch of 4 at 512² decoded whole thrashes the caches: bench/concurrency.py).
            pipe.vae.enable_slicing()
        if self.channels_last and self.device == "cuda":
            # Convolutions run faster in NHWC with cuDNN. After the move, so the host keeps no converted copy;
            # each weight is swapped in place on the GPU. Not on CPU: there the conversion copies every conv
            # weight out of the mmap'd safetensors (+5 GB RSS at SD 1.5 size) and oneDNN ran 10-20% slower
            # on it, not faster (docs/benchmarks.md, "Performance, round two").
            for module in (getattr(pipe, "unet", None), getattr(pipe, "vae", None)):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        if self.device != "cuda":
            return total
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        if self.compile and denoiser is not None:
            compiled = torch.compile(denoiser, mode=self.COMPILE_MODE, fullgraph=False)
            setattr(pipe, "unet" if hasattr(pipe, "unet") else "transformer", compiled)
            self._warm_up(pipe, spec)
        return total

    @staticmethod
    def _warm_up(pipe, spec: ModelSpec) -> None:
        """One throwaway call at the default size, so the first real request doesn't pay for compilation."""
        size = spec.native_size
        kwargs = {"prompt": "warm up", "num_inference_steps": 1, "width": size, "height": size}
        if spec.family in ("sd", "sdxl"):
            kwargs["guidance_scale"] = spec.default_guidance
        with torch.inference_mode():
            pipe(**kwargs)

    def _swap_unet(self, pipe, spec: ModelSpec, local_only: bool) -> None:
        from huggingface_hub import hf_hub_download
        from safetensors.torch import load_file

        repo, filename = spec.unet_weights
        try:
            path = hf_hub_download(repo, filename, local_files_only=local_only,
                                   local_dir=self.models_dir / f"{spec.slug}-unet")
        except (OSError, EnvironmentError) as exc:
            raise ModelUnavailable(self._absent_message(spec)) from exc
        pipe.unet.load_state_dict(load_file(path, device="cpu"))
        pipe.unet.to(self.dtype)

    # -- pulling -----------------------------------------------------------------------------
    def pull(self, slug: str, progress: ProgressFn | None = None, *, events=None, cancel=None,
             hub_url: str | None = None) -> Path:
        """Download a model's weights into the models folder (or build a tiny one): engine/generation/downloads.py.
        ``progress(done, total)`` and/or ``events(PullProgress)``; ``cancel``: a threading.Event checked between
        chunks (a cancelled pull keeps its .part files and the next one resumes); ``hub_url``: the settings'."""
        from engine.generation.downloads import HUB_URL, pull_model

        def report(event) -> None:
            if progress is not None:
                progress(event.done, event.total)
            if events is not None:
                events(event)

        return pull_model(self.catalog.get(slug), self.models_dir, hub_url=hub_url or HUB_URL, events=report,
                          cancel=cancel)

