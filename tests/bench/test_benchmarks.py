"""The benchmark code itself keeps working (no timings asserted: those live in docs/benchmarks.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fullsize import build, parameter_counts

ROOT = Path(__file__).resolve().parents[2]
# Each benchmark starts its own server on its own SQLite data dir: the PostgreSQL pass would run them again as is.
pytestmark = pytest.mark.sqlite_pass_only


@pytest.mark.parametrize("arch,expected", [
    ("sdxl", {"unet": 2.567e9, "text_encoder": 0.123e9, "text_encoder_2": 0.695e9, "vae": 0.0838e9}),
    ("flux-schnell", {"transformer": 11.90e9, "text_encoder": 0.123e9, "text_encoder_2": 4.76e9, "vae": 0.0838e9}),
])
def test_full_size_architectures_match_the_published_models(arch, expected):
    counts = parameter_counts(build(arch, "meta"))  # no memory: the meta device holds shapes only
    for component, params in expected.items():
        assert counts[component] == pytest.approx(params, rel=0.01), component


def test_overhead_benchmark_runs(tmp_path):
    env = os.environ | {"IMAGESTUDIO_BENCH_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "bench.overhead", "--images", "2", "--rounds", "1",
                             "--size", "256", "--steps", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio server / its pipe() bare" in result.stdout
    report = json.loads(next(tmp_path.glob("overhead-*.json")).read_text())
    assert report["ratio"] > 0 and report["ratio_vs_plain_diffusers"] > 0 and len(report["rows"]) == 3


def test_batching_benchmark_runs(tmp_path):
    env = os.environ | {"IMAGESTUDIO_BENCH_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "bench.batching", "--size", "256", "--steps", "1", "--reps", "1",
                             "--batches", "1,2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("batching-*.json")).read_text())
    assert [row["batch"] for row in report["rows"]] == [1, 2] and report["rows"][0]["gain"] == 1.0


def test_gpu_benchmark_runs_its_code_paths_on_cpu_in_tiny_mode(tmp_path):
    """bench.gpu --tiny: bare and served images, 1/4/8 clients, torch.compile (dynamo, eager backend), the
    NaN/inf check and LRU eviction between two models under a budget that fits one; untimed."""
    env = os.environ | {"IMAGESTUDIO_BENCH_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "bench.gpu", "--tiny", "--images", "1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("gpu-tiny-*.json")).read_text())
    assert [row["finite"] for row in report["rows"]] == ["yes", "yes"]
    assert report["eviction"]["evicted"], report["eviction"]
    for slug in ("tiny-sdxl", "tiny-flux"):
        assert report["bare"][slug]["compiled_s"] > 0 and report["served"][slug]["ips_8"] > 0
