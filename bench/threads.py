"""Torch threads on a CPU-only box: the default (one core left for the API) against every core, with and
without a neighbouring process that keeps one core busy.

    python -m bench.threads --model tiny-sd --size 256 --steps 4 --seconds 20

For each thread setting and neighbour state, a fresh server; one client generates in a closed loop while
another asks for the model list (a cheap request) every 100 ms. Reports images/s and the cheap request's
p50/p99: what a neighbour, or the API's own requests, cost generation when torch takes every core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import httpx

from bench.common import prepare_data_dir, print_table, running_server, summary, temp_dirs, write_result

BURN = "while True: pass"  # the neighbour: one core, all the time


def run(base: str, key: str, body: dict, seconds: float) -> tuple[int, list[float]]:
    headers = {"Authorization": f"Bearer {key}"}
    stop_at = time.perf_counter() + seconds
    images, cheap = 0, []

    def poll() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                client.get("/api/v1/models").raise_for_status()
                cheap.append(time.perf_counter() - started)
                time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        while time.perf_counter() < stop_at:
            client.post("/api/v1/generate", json=body | {"prompt": f"a fox {images}", "seed": images}).raise_for_status()
            images += 1
    poller.join()
    return images, cheap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    body = {"model": args.model, "width": args.size, "height": args.size, "steps": args.steps}

    rows = []
    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir, (args.model,))
        for neighbour in (False, True):
            for threads in (0, cores):
                label = "default (cores - 1)" if threads == 0 else f"{threads} (every core)"
                burner = subprocess.Popen([sys.executable, "-c", BURN]) if neighbour else None
                try:
                    with running_server(data_dir, models_dir, {"IMAGESTUDIO_CPU_THREADS": str(threads)}) as (
                            base, _proc, _ready):
                        httpx.post(f"{base}/api/v1/generate", headers={"Authorization": f"Bearer {key}"},
                                   json=body | {"prompt": "warm up"}, timeout=600).raise_for_status()
                        images, cheap = run(base, key, body, args.seconds)
                finally:
                    if burner is not None:
                        burner.kill()
                        burner.wait()
                stats = summary(cheap)
                rows.append({"neighbour": "one core busy" if neighbour else "none", "torch threads": label,
                             "images/s": round(images / args.seconds, 2), "models p50_ms": stats["p50_ms"],
                             "models p99_ms": stats["p99_ms"]})
    print(f"\nThreads: {args.model}, {args.size}x{args.size}, {args.steps} steps, {cores} cores, "
          f"{args.seconds:.0f} s per row\n")
    print_table(rows, list(rows[0]))
    write_result("threads", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
