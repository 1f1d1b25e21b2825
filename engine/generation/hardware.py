"""What this machine is (GPU and its memory, or CPU and RAM, free disk) and which catalog model runs well on it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.generation.catalog import ModelSpec

GIB = 2**30


@dataclass(frozen=True)
class Machine:
    accelerator: str  # "cuda", "mps" or "cpu"
    gpu_name: str | None
    gpu_memory_bytes: int  # 0 without a CUDA GPU
    cpu_count: int
    ram_bytes: int
    free_disk_bytes: int  # on the models folder's disk

    def summary(self) -> str:
        if self.accelerator == "cuda":
            device = f"GPU {self.gpu_name} with {size_text(self.gpu_memory_bytes)}"
        elif self.accelerator == "mps":
            device = f"Apple GPU (shares {size_text(self.ram_bytes)} of memory)"
        else:
            device = f"no GPU; {self.cpu_count} CPU cores, {size_text(self.ram_bytes)} of RAM"
        return f"{device}; {size_text(self.free_disk_bytes)} free disk"


@dataclass(frozen=True)
class Recommendation:
    spec: ModelSpec | None  # None: nothing in the catalog runs well here (or fits the disk)
    reason: str

    @property
    def download_bytes(self) -> int:
        return (self.spec.download_bytes or 0) if self.spec else 0


def size_text(count: int) -> str:
    """Bytes as people read them: 512 KB, 4.3 GB (decimal units, as the hub and disk tools show them)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _ram_bytes() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # Windows has no sysconf
        return 0


def free_disk(folder: Path) -> int:
    """Free bytes on the disk that holds (or will hold) ``folder``."""
    folder = Path(folder).resolve()
    while not folder.exists() and folder != folder.parent:  # the models folder may not exist yet
        folder = folder.parent
    return shutil.disk_usage(folder).free


def detect(models_dir: Path) -> Machine:
    """Look at this machine (torch.cuda for the GPU; /proc/meminfo or sysconf for RAM)."""
    import torch

    gpu_name, gpu_memory, accelerator = None, 0, "cpu"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu_name, gpu_memory, accelerator = props.name, int(props.total_memory), "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        accelerator = "mps"
    return Machine(accelerator=accelerator, gpu_name=gpu_name, gpu_memory_bytes=gpu_memory,
                   cpu_count=os.cpu_count() or 1, ram_bytes=_ram_bytes(), free_disk_bytes=free_disk(models_dir))


# The models a machine may be offered, best first, with what each needs to run well. GPU memory thresholds are a
# little under the card's nominal size: torch reports a "24 GB" card as 23.6-24 GiB, an "8 GB" one as 7.6-8 GiB.
# (slug, GiB of CUDA memory, GiB of an Apple GPU's shared memory, GiB of RAM on a CPU: None where it won't run
# well; why it suits)
TIERS: tuple[tuple[str, float | None, float | None, float | None, str], ...] = (
    ("flux-schnell", 22.0, None, None, "the best quality here in 1-4 steps; its 12B transformer wants a 24 GB GPU"),
    ("sdxl-lightning", 7.0, 16.0, None, ("SDXL quality in 4 steps with about 7 GB of weights in half precision: "
                                        "right for an 8-16 GB GPU")),
    ("dreamshaper-8-lcm", 3.5, 8.0, 6.0, ("a small SD 1.5 model (1B parameters) that makes good images in 4-8 "
                                         "steps: the one that runs in reasonable time on a CPU or a small GPU")),
)


def _runs_here(machine: Machine, needs: tuple[float | None, float | None, float | None]) -> bool:
    cuda, mps, cpu = needs
    if machine.accelerator == "cuda":
        return cuda is not None and machine.gpu_memory_bytes >= cuda * GIB
    limit = mps if machine.accelerator == "mps" else cpu
    return limit is not None and machine.ram_bytes >= limit * GIB


def recommend(machine: Machine, catalog) -> Recommendation:
    """The best model that runs well on ``machine`` and fits its free disk (``catalog``: anything with
    ``get(slug)``). Pure: looks at nothing but its arguments."""
    runnable = [(catalog.get(slug), why) for slug, *needs, why in TIERS if _runs_here(machine, tuple(needs))]
    if not runnable:
        return Recommendation(None, f"this machine ({machine.summary()}) has too little memory for the catalog's "
                                    "models; the tiny offline models still work for trying the studio")
    best = runnable[0][0]
    for spec, why in runnable:
        size = spec.download_bytes or 0
        if size <= machine.free_disk_bytes:
            reason = f"{spec.name} suits {machine.summary()}: {why}. Download: {size_text(size)}."
            if spec is not best:
                reason += (f" {best.name} would suit this machine better but needs "
                           f"{size_text(best.download_bytes or 0)} of disk, and only "
                           f"{size_text(machine.free_disk_bytes)} is free.")
            return Recommendation(spec, reason)
    smallest = runnable[-1][0]
    return Recommendation(None, f"no model that runs well here fits the free disk: {smallest.name}, the smallest, "
                                f"needs {size_text(smallest.download_bytes or 0)} and "
                                f"{size_text(machine.free_disk_bytes)} is free. Free some space, or keep to the "
                                "tiny offline models")
