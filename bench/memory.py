"""Memory: server RSS when idle and after each model is loaded (GPU memory too, where present).

    python -m bench.memory --models tiny-sd,tiny-sdxl,tiny-flux
"""

from __future__ import annotations

import argparse

import httpx

from bench.common import prepare_data_dir, print_table, rss_mb, running_server, temp_dirs, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny-sd,tiny-sdxl,tiny-flux")
    args = parser.parse_args()

    rows = []
    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir, tuple(args.models.split(",")))
        with running_server(data_dir, models_dir) as (base, proc, _ready):
            headers = {"Authorization": f"Bearer {key}"}
            health = httpx.get(f"{base}/api/v1/health").json()["data"]["checks"]["device"]
            rows.append({"state": "idle, no model loaded", "rss_mb": round(rss_mb(proc.pid), 1),
                         "loaded_mb": round(health["loaded_bytes"] / 2**20, 1)})
            for model in args.models.split(","):
                httpx.post(f"{base}/api/v1/generate", headers=headers, timeout=600,
                           json={"prompt": "x", "model": model, "width": 256, "height": 256}).raise_for_status()
                device = httpx.get(f"{base}/api/v1/health").json()["data"]["checks"]["device"]
                rows.append({"state": f"+ {model}", "rss_mb": round(rss_mb(proc.pid), 1),
                             "loaded_mb": round(device["loaded_bytes"] / 2**20, 1),
                             "gpu_mb": round(device.get("gpu_allocated_bytes", 0) / 2**20, 1),
                             "models": ",".join(device["loaded_models"])})
    print("\nMemory (RSS of the server process; loaded_mb = weights the pipeline manager counts)\n")
    print_table(rows, ["state", "rss_mb", "loaded_mb", "gpu_mb", "models"])
    write_result("memory", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
