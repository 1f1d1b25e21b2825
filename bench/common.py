"""Shared pieces of the benchmarks: a real server in a subprocess, a bench account, stats and reports."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("IMAGESTUDIO_BENCH_RESULTS", ROOT / "bench" / "results"))


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bench_settings(data_dir: Path, models_dir: Path, **overrides):
    from engine.config import Settings

    return Settings(_env_file=None, data_dir=data_dir, models_path=models_dir, default_model="tiny-sd",
                    studio_enabled=False, allow_downloads=False, secret_key="bench", **overrides)


def model_path(slug: str, models_dir: Path) -> Path:
    """The folder a benchmark model loads from: a tiny model (built in ``models_dir``) or a real-size one
    (``bench-sd15``, ``bench-sdxl``: built once in a cache, bench/fullsize.py)."""
    from bench.fullsize import SAVED_ARCHS, model_folder
    from engine.generation.tiny_models import ensure_tiny_model

    return model_folder(slug) if slug in SAVED_ARCHS else ensure_tiny_model(slug, models_dir)


def register_bench_models(catalog, models_dir: Path, models: tuple[str, ...]) -> None:
    from bench.fullsize import SAVED_ARCHS

    for slug in models:
        if slug in SAVED_ARCHS:
            catalog.add_custom(slug, str(model_path(slug, models_dir)), "sdxl" if "xl" in slug else "sd")


def prepare_data_dir(data_dir: Path, models_dir: Path, models: tuple[str, ...] = ()) -> str:
    """A bench account on an unlimited plan (storage off, like the Free plan); returns its API key.
    Real-size bench models named in ``models`` are registered as custom models (their folder)."""
    from engine.accounts.users import create_api_key, create_user
    from engine.data.db import session_scope
    from engine.data.tables import Plan
    from engine.generation.tiny_models import TINY_MODEL_SLUGS, ensure_tiny_model
    from engine.service import ImageEngine

    for slug in TINY_MODEL_SLUGS:
        ensure_tiny_model(slug, models_dir)
    engine = ImageEngine(bench_settings(data_dir, models_dir))
    register_bench_models(engine.catalog, models_dir, models)
    big = 10**9
    with session_scope(engine.db) as session:
        session.merge(Plan(slug="bench", name="Bench", requests_per_minute=big, requests_per_day=big,
                           requests_per_month=big, max_concurrent_jobs=10_000, max_batch_size=100,
                           monthly_credits=big))
        session.commit()
        user = create_user(session, "bench@localhost", plan_slug="bench")
        _, key = create_api_key(session, user, "bench")
    return key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(data_dir: Path, models_dir: Path, extra_env: dict | None = None, timeout: float = 120):
    """`imagestudio serve` in a subprocess on a free 127.0.0.1 port; yields (base_url, process, seconds_to_ready).

    Its output goes to a file beside the data dir: a pipe nobody reads fills up under load and stalls it.
    """
    port = free_port()
    env = os.environ | {"IMAGESTUDIO_DATA_DIR": str(data_dir), "IMAGESTUDIO_MODELS_PATH": str(models_dir),
                        "IMAGESTUDIO_HOST": "127.0.0.1", "IMAGESTUDIO_DEFAULT_MODEL": "tiny-sd",
                        "IMAGESTUDIO_STUDIO_ENABLED": "false", "IMAGESTUDIO_ALLOW_DOWNLOADS": "false",
                        "IMAGESTUDIO_SECRET_KEY": "bench", "HF_HUB_OFFLINE": "1"} | (extra_env or {})
    log_path = data_dir.parent / "server.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--log-level",
                                 "warning"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited:\n" + log_path.read_text()[-3000:])
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > timeout:
                raise RuntimeError("server did not become ready:\n" + log_path.read_text()[-3000:])
            time.sleep(0.05)
        yield base, proc, time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), MB (Linux /proc)."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class BareWorker:
    """A pipeline called bare in its own process (bench/bare_worker.py): ``call(**bare_kwargs args)`` returns
    the seconds the call took there; ``rss_mb`` is that process's resident memory after its last call."""

    def __init__(self, kind: str, model: str, data_dir: Path, models_dir: Path, threads: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_worker", kind, "--model", model, "--models-dir", str(models_dir),
             "--data-dir", str(data_dir / f"bare-{kind}"), "--threads", str(threads)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=os.environ | {"HF_HUB_OFFLINE": "1"})
        self.rss_mb = self._answer()["rss_mb"]

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bare worker exited ({self.proc.wait()})")
        return json.loads(line)

    def call(self, **request) -> float:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self._answer()
        self.rss_mb = answer["rss_mb"]
        return answer["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int, busy_fraction: float = 0.1, timeout: float = 120) -> float:
    """Wait until the process uses less than ``busy_fraction`` of a core over a second; returns the seconds
    waited. A server imports every pipeline's code in the background after start (seconds of CPU on a small
    box): a run that starts meanwhile measures the imports as much as the server."""
    started = time.perf_counter()
    last = process_cpu_s(pid)
    while time.perf_counter() - started < timeout:
        time.sleep(1.0)
        now = process_cpu_s(pid)
        if now - last < busy_fraction:
            break
        last = now
    return time.perf_counter() - started


@contextmanager
def temp_dirs():
    with tempfile.TemporaryDirectory(prefix="imagestudio-bench-") as tmp:
        yield Path(tmp) / "data", Path(tmp) / "models"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def summary(latencies_s: list[float]) -> dict:
    return {"p50_ms": round(percentile(latencies_s, 50) * 1000, 1), "p95_ms": round(percentile(latencies_s, 95) * 1000, 1),
            "p99_ms": round(percentile(latencies_s, 99) * 1000, 1),
            "mean_ms": round(statistics.fmean(latencies_s) * 1000, 1) if latencies_s else None}


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{device_name()}-{stamp}.json"
    payload = {"benchmark": name, "when": stamp, "machine": machine()} | payload
    path.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {path}")
    return path


def bare_pipeline(models_dir: Path, slug: str, device: str | None = None):
    """The model as plain diffusers loads it (its defaults), for side-by-side timings."""
    import diffusers

    from engine.generation.device import resolve_device, resolve_dtype

    device = device or resolve_device("auto")
    path = model_path(slug, models_dir)
    pipe = diffusers.DiffusionPipeline.from_pretrained(path, dtype=resolve_dtype(device), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def placed_pipeline(data_dir: Path, models_dir: Path, slug: str, **settings):
    """The very pipeline object the server runs: loaded and placed by its PipelineManager (dtype,
    channels-last, VAE slicing...). Calling it bare measures the server's own overhead and nothing else."""
    from engine.service import ImageEngine

    engine = ImageEngine(bench_settings(data_dir.parent / "placed", models_dir, **settings))
    register_bench_models(engine.catalog, models_dir, (slug,))
    return engine.pipelines.get(slug).pipe


def bare_kwargs(prompt: str, width: int, height: int, steps: int, seed: int, guidance: float) -> dict:
    import torch

    return {"prompt": prompt, "width": width, "height": height, "num_inference_steps": steps,
            "guidance_scale": guidance, "generator": torch.Generator("cpu").manual_seed(seed)}
