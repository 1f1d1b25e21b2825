"""Ray Serve workers against the in-process worker: throughput with 1 and 2 replicas, and the Ray hop per request.

    python -m bench.ray_workers --model tiny-sd --size 256 --steps 4 --clients 4 --images 24

Engine-level (no HTTP): requests go in through ``submit_generation`` as the routes send them, from ``--clients``
threads. Three set-ups, each warmed up first:

- in-process: ``IMAGESTUDIO_WORKER=local``, torch with every core;
- Ray, 1 replica with every core;
- Ray, 2 replicas, the cores split between them (on a 2-core box, 1 each).

The hop is what one sequential request costs through Ray over in-process (the handle call, the request and the
PNG crossing processes, the progress board), at the same size. On a GPU box (``--device cuda``) each replica
takes a GPU (``num_gpus=1``): run with as many replicas as GPUs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

from bench.common import machine, prepare_data_dir, print_table, temp_dirs, write_result


def run_setup(settings, count: int, clients: int, make_params) -> dict:
    from engine.service import ImageEngine
    from tests.conftest import make_user

    engine = ImageEngine(settings)
    engine.start()
    try:
        user, _ = make_user(engine, f"bench-{time.time_ns()}@localhost", plan="pro")
        for _ in range(2):  # warm up: the deployment, the model load, the first calls
            engine.generate(user, make_params(0), store=False)
        sequential = []
        for i in range(5):
            started = time.perf_counter()
            engine.generate(user, make_params(i), store=False)
            sequential.append(time.perf_counter() - started)
        pending = list(range(count))
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    seed = pending.pop()
                engine.generate(user, make_params(seed), store=False)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        return {"images/s": round(count / elapsed, 2), "sequential_ms": round(statistics.median(sequential) * 1000, 1)}
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()

    import ray
    from ray import serve

    from bench.common import bench_settings
    from engine.generation.params import GenerationParams

    cores = os.cpu_count() or 2

    def make_params(seed: int) -> GenerationParams:
        return GenerationParams(prompt=f"a lighthouse at dusk {seed}", model=args.model, width=args.size,
                                height=args.size, steps=args.steps, seed=seed)

    rows = []
    with temp_dirs() as (data_dir, models_dir):
        prepare_data_dir(data_dir, models_dir, (args.model,))
        base = bench_settings(data_dir, models_dir, device=args.device,
                              cpu_threads=cores if args.device == "cpu" else 0)
        rows.append({"setup": "in-process", **run_setup(base, args.images, args.clients, make_params)})
        for replicas in (1, 2):
            ray.init(num_cpus=cores, num_gpus=replicas if args.device == "cuda" else 0, include_dashboard=False,
                     log_to_driver=False, namespace="imagestudio")
            try:
                per_replica = max(1, cores // replicas)
                settings = base.model_copy(update={
                    "worker": "ray", "ray_min_replicas": replicas, "ray_max_replicas": replicas,
                    "ray_num_cpus": per_replica if args.device == "cpu" else 1,
                    "ray_num_gpus": 1.0 if args.device == "cuda" else 0.0,
                    "cpu_threads": per_replica if args.device == "cpu" else 0})
                rows.append({"setup": f"ray, {replicas} replica{'s' if replicas > 1 else ''}",
                             **run_setup(settings, args.images, args.clients, make_params)})
            finally:
                serve.shutdown()
                ray.shutdown()
    local = rows[0]
    for row in rows:
        row["scale"] = round(row["images/s"] / local["images/s"], 2)
        row["hop_ms"] = round(row["sequential_ms"] - local["sequential_ms"], 1)
    print(f"\nRay workers: {args.model}, {args.size}x{args.size}, {args.steps} steps, {args.clients} clients, "
          f"{args.images} images, {args.device}\n")
    print_table(rows, ["setup", "images/s", "scale", "sequential_ms", "hop_ms"])
    write_result("ray_workers", {"args": vars(args), "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
