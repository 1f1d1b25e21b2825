"""The GPU benchmark in one command: full-size SDXL and FLUX.1-schnell (random weights, bf16 or fp16), bare
`pipe()` against the server over HTTP, dynamic batching at 1/4/8 clients, torch.compile, peak VRAM, a NaN/inf
check of the decoded images, and LRU eviction between the two models under a budget that fits one.

    python -m bench.gpu                  # on one CUDA GPU (about 6-8 minutes on an H100, 64 GB of free disk)
    python -m bench.gpu --tiny           # CPU, tiny models: the same code paths in a minute (tests run this)

Per model, in order: (1) its folder is written once (bench/fullsize.py's published configs, random weights,
`save_pretrained` in the run's dtype) under IMAGESTUDIO_BENCH_MODELS; (2) bare: plain diffusers
`from_pretrained` in this process, s/image over ``--images`` images after a warm-up, peak VRAM, every decoded
image checked finite; then torch.compile of the denoiser (the server's mode): warm-up time and the compiled
s/image; the bare pipeline is freed; (3) the server (`imagestudio serve` in a subprocess, a memory budget that
fits the larger model but not both): s/image over HTTP, one client, then 1/4/8 concurrent clients; each PNG
checked (a NaN decodes to a flat black image). After both models, the first is asked for again: the server
must have evicted it for the second (health's loaded_models) and loads it back.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import io
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from bench.common import prepare_data_dir, print_table, running_server, temp_dirs, write_result


@dataclass(frozen=True)
class BenchModel:
    slug: str      # catalog slug the server serves it under
    arch: str      # bench/fullsize.py architecture, or "" for a tiny model (already in the catalog)
    family: str
    size: int
    steps: int
    guidance: float


FULL = (BenchModel("bench-sdxl-gpu", "sdxl", "sdxl", 1024, 30, 7.0),
        BenchModel("bench-flux-schnell-gpu", "flux-schnell", "flux", 1024, 4, 0.0))
TINY = (BenchModel("tiny-sdxl", "", "sdxl", 256, 2, 5.0),
        BenchModel("tiny-flux", "", "flux", 256, 2, 0.0))
CLIENTS = (1, 4, 8)


def model_folder(model: BenchModel, models_dir: Path, device: str, dtype: torch.dtype) -> Path:
    """Where the model loads from: a tiny model's folder, or a full-size one written once in the run's dtype."""
    if not model.arch:
        from engine.generation.tiny_models import ensure_tiny_model

        return ensure_tiny_model(model.slug, models_dir)
    from bench.fullsize import BENCH_MODELS, build

    folder = BENCH_MODELS / f"{model.slug}-{str(dtype).removeprefix('torch.')}"
    if not (folder / "model_index.json").exists():
        print(f"building {model.slug} ({model.arch}, random weights, {dtype}) in {folder} ...", flush=True)
        pipe = build(model.arch, device, dtype)
        partial = folder.with_name(folder.name + ".partial")
        pipe.save_pretrained(partial, safe_serialization=True)
        partial.rename(folder)  # whole folder or none
        del pipe
        free_memory()
    return folder


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def finite_images(images: np.ndarray) -> bool:
    """Decoded images (output_type="np") with no NaN or inf anywhere."""
    return bool(np.isfinite(images).all())


def png_is_plausible(data_url: str) -> bool:
    """A served PNG is finite by construction; a NaN in the latents decodes to one flat colour (black)."""
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as image:
        return float(np.asarray(image.convert("RGB"), dtype=np.float32).std()) > 0.0


def bare_runs(model: BenchModel, folder: Path, device: str, dtype: torch.dtype, images: int,
              compile_backend: str | None) -> dict:
    """Plain diffusers on this process: s/image, peak VRAM, finiteness; then torch.compile's warm-up and speedup."""
    import diffusers

    from engine.generation.pipelines import PipelineManager

    pipe = diffusers.DiffusionPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"width": model.size, "height": model.size, "num_inference_steps": model.steps,
              "guidance_scale": model.guidance, "output_type": "np"}

    def one(n: int) -> tuple[float, bool]:
        started = time.perf_counter()
        with torch.inference_mode():
            out = pipe(prompt=f"a lighthouse at dusk {n}", generator=torch.Generator("cpu").manual_seed(n), **kwargs)
        synchronize()
        return time.perf_counter() - started, finite_images(out.images)

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    one(0)  # warm-up
    runs = [one(n + 1) for n in range(images)]
    row = {"bare_s": statistics.fmean(t for t, _ in runs), "finite": all(ok for _, ok in runs),
           "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}
    if compile_backend:
        name = "unet" if hasattr(pipe, "unet") else "transformer"
        # The server's compile (engine/generation/pipelines.py) on CUDA; "eager" on CPU runs dynamo's tracing only.
        options = {"mode": PipelineManager.COMPILE_MODE} if compile_backend == "inductor" else {}
        setattr(pipe, name, torch.compile(getattr(pipe, name), backend=compile_backend, fullgraph=False, **options))
        started = time.perf_counter()
        _, finite = one(0)
        row["compile_warmup_s"] = time.perf_counter() - started
        compiled = [one(n + 1) for n in range(images)]
        row["compiled_s"] = statistics.fmean(t for t, _ in compiled)
        row["finite"] = row["finite"] and finite and all(ok for _, ok in compiled)
    pipe = None  # freed before the server loads its own copy
    free_memory()
    return row


async def served_runs(base: str, key: str, model: BenchModel, images: int) -> dict:
    """The server over HTTP: s/image with one client in turn, then images/s at each number of clients."""
    body = {"model": model.slug, "width": model.size, "height": model.size, "steps": model.steps,
            "guidance_scale": model.guidance}
    plausible = True

    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=1800,
                                 limits=httpx.Limits(max_connections=max(CLIENTS) + 4)) as http:
        async def generate(n: int) -> float:
            nonlocal plausible
            started = time.perf_counter()
            response = await http.post("/api/v1/generate", json=body | {"prompt": f"a lighthouse {n}", "seed": n})
            response.raise_for_status()
            plausible = plausible and png_is_plausible(response.json()["data"]["image"])
            return time.perf_counter() - started

        load_s = await generate(0)  # loads the model (and evicts the other one under the budget)
        row = {"first_request_s": load_s, "served_s": statistics.fmean([await generate(n + 1) for n in range(images)])}
        for clients in CLIENTS:
            per_client = max(2, images) if clients > 1 else images
            started = time.perf_counter()
            await asyncio.gather(*(generate(1000 * c + n) for c in range(clients) for n in range(per_client)))
            row[f"ips_{clients}"] = clients * per_client / (time.perf_counter() - started)
        health = (await http.get("/api/v1/health")).json()["data"]["checks"]["device"]
    row["plausible_pngs"] = plausible
    row["server_loaded"] = health["loaded_models"]
    row["server_gpu_gib"] = health.get("gpu_allocated_bytes", 0) / 2**30
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny models: the same code paths, small")
    parser.add_argument("--images", type=int, default=3, help="images per timing (bare, served, per client)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("bench.gpu needs a CUDA GPU; `python -m bench.gpu --tiny` runs its code paths on CPU")
    device = "cpu" if args.tiny else "cuda"
    dtype = torch.float32 if args.tiny else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    models = TINY if args.tiny else FULL
    compile_backend = None if args.no_compile else ("eager" if args.tiny else "inductor")

    rows, eviction = [], {}
    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir)
        folders = {m.slug: model_folder(m, models_dir, device, dtype) for m in models}
        bare = {m.slug: bare_runs(m, folders[m.slug], device, dtype, args.images, compile_backend) for m in models}
        register_models(data_dir, models_dir, models, folders)
        sizes = {slug: folder_bytes(folder) for slug, folder in folders.items()}
        # Fits the larger model but not both: the second evicts the first (least recently used).
        budget_gb = (max(sizes.values()) + 0.5 * min(sizes.values())) / 2**30
        env = {"IMAGESTUDIO_DEVICE": device, "IMAGESTUDIO_DTYPE": str(dtype).removeprefix("torch."),
               "IMAGESTUDIO_MEMORY_BUDGET_GB": f"{budget_gb:.3f}"}
        with running_server(data_dir, models_dir, env, timeout=300) as (base, _proc, _ready):
            served = {m.slug: asyncio.run(served_runs(base, key, m, args.images)) for m in models}
            first, second = models[0].slug, models[1].slug
            started = time.perf_counter()
            httpx.post(f"{base}/api/v1/generate", headers={"Authorization": f"Bearer {key}"}, timeout=1800,
                       json={"prompt": "back", "model": first, "width": models[0].size, "height": models[0].size,
                             "steps": 1}).raise_for_status()
            loaded = httpx.get(f"{base}/api/v1/health").json()["data"]["checks"]["device"]["loaded_models"]
            eviction = {"budget_gib": round(budget_gb, 4), "after_second": served[second]["server_loaded"],
                        "after_first_again": loaded, "reload_s": round(time.perf_counter() - started, 2),
                        "evicted": served[second]["server_loaded"] == [second] and loaded == [first]}

    for m in models:
        b, s = bare[m.slug], served[m.slug]
        rows.append({
            "model": f"{m.slug} {m.size}² {m.steps} st", "bare s/img": f"{b['bare_s']:.3f}",
            "server s/img": f"{s['served_s']:.3f}", "overhead": f"{s['served_s'] / b['bare_s']:.3f}",
            **{f"{c} cl img/s": f"{s[f'ips_{c}']:.2f}" for c in CLIENTS},
            "batching": f"{s[f'ips_{max(CLIENTS)}'] / s['ips_1']:.2f}x",
            "compile warm-up s": f"{b['compile_warmup_s']:.1f}" if "compile_warmup_s" in b else "-",
            "compile speedup": f"{b['bare_s'] / b['compiled_s']:.2f}x" if "compiled_s" in b else "-",
            "peak VRAM GiB": f"{b['peak_vram_gib']:.1f}" if b["peak_vram_gib"] is not None else "-",
            "finite": "yes" if b["finite"] and s["plausible_pngs"] else "NO"})
    title = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.tiny else "CPU (tiny mode)"
    print(f"\nbench.gpu on {title}, {dtype}, {args.images} images per timing\n")
    print_table(rows, list(rows[0]))
    print(f"\nLRU eviction under a {eviction['budget_gib']:.3g} GiB budget: after {models[1].slug}: "
          f"{eviction['after_second']}; {models[0].slug} again: {eviction['after_first_again']} "
          f"in {eviction['reload_s']} s -> {'evicted and reloaded' if eviction['evicted'] else 'NOT EVICTED'}")
    write_result("gpu-tiny" if args.tiny else "gpu", {"args": vars(args), "dtype": str(dtype), "rows": rows,
                                                      "bare": bare, "served": served, "eviction": eviction})


def register_models(data_dir: Path, models_dir: Path, models: tuple[BenchModel, ...], folders: dict) -> None:
    """Full-size bench models are custom models of the server (their folders); tiny ones are built in."""
    from bench.common import bench_settings
    from engine.service import ImageEngine

    engine = ImageEngine(bench_settings(data_dir, models_dir))
    for m in models:
        if m.arch:
            engine.catalog.add_custom(m.slug, str(folders[m.slug]), m.family)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*.safetensors"))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
