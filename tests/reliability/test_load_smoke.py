"""bench/load.py runs end to end (a few clients for a few seconds): the real load run is not part of the suite."""

import json
import subprocess
import sys

from tests.server_process import ROOT


def test_the_load_script_runs_and_reports(tmp_path, models_dir):
    out = tmp_path / "load.json"
    run = subprocess.run([sys.executable, "bench/load.py", "--clients", "5", "--seconds", "3", "--models-dir",
                          str(models_dir), "--out", str(out), "--fail-on-errors"], cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "throughput_rps" in run.stdout and "p99_ms" in run.stdout
    result = json.loads(out.read_text())
    assert set(result["endpoints"]) == {"models", "usage", "health", "generate", "total"}
    for name, row in result["endpoints"].items():
        assert row["requests"] > 0 and row["errors"] == {}, (name, row)
        assert row["p50_ms"] <= row["p99_ms"]
    assert result["server_healthy_after"] and result["usage_consistent"]
