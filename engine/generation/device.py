"""Pick the torch device and dtype the pipelines run on."""

from __future__ import annotations

import torch


def resolve_device(choice: str = "auto") -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(device: str, choice: str = "auto") -> torch.dtype:
    if choice != "auto":
        return getattr(torch, choice)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def device_memory_bytes(device: str) -> int:
    """Total memory of the device the pipelines live on (system RAM for the CPU)."""
    if device == "cuda":
        return torch.cuda.get_device_properties(0).total_memory
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_threads(setting: int) -> int:
    """Torch threads for a CPU-only box: the setting, or by default one core fewer than torch would take, so
    the API's event loop and request threads keep a core: with every core busy in the pipeline, a neighbouring
    process or the API itself makes each image several times slower (docs/benchmarks.md, round two)."""
    if setting:
        return setting
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cores - 1))


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc() -> bool:
    """Keep glibc from giving the pipeline's working memory back to the kernel between denoising steps.

    By default glibc maps each allocation over a (dynamic, at most 32 MB) threshold fresh from the kernel and
    trims freed arena tops, so every step of a real-size model page-faults its activations in again; on a
    worker thread (its own arena) this made the server's pipeline call 15-25% slower than the same call on
    the main thread. Kept resident up to 1 GB while it works (release_free_memory gives it back once the
    worker is idle), it runs as fast as bare diffusers on the main thread (docs/benchmarks.md, round two). False where the C library is not glibc (macOS, Windows, musl)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def release_free_memory() -> bool:
    """Give the memory malloc keeps free (tune_malloc's working memory) back to the system: the worker calls it
    once it is idle, so a box that is not generating holds its weights and little more. glibc only."""
    import ctypes

    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes, malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return bool(malloc_trim(0))


# Pixels one batched pipeline call holds at most, per device: where bigger batches stopped paying in
# bench/batching.py (docs/benchmarks.md, round two). On a 2-core CPU a batch of 4 at 256² made 1.55x the
# images/s of single calls and 8 made 1.47x, while at 512² any batch was slower (0.97x); on a GPU one 1024²
# image rarely fills the device.
BATCH_PIXELS = {"cpu": 4 * 256 * 256, "mps": 4 * 256 * 256, "cuda": 8 * 1024 * 1024}

def batch_limit(device: str, width: int, height: int) -> int:
    """Most images of this size one batched call takes on ``device`` (the worker's max_batch caps it too)."""
    return max(1, BATCH_PIXELS.get(device, BATCH_PIXELS["cpu"]) // (width * height))
