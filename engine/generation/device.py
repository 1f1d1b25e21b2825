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
