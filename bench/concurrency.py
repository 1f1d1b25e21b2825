"""Concurrency: 1, 4, 8, 16 clients sending compatible requests to the server, against a bare sequential loop
(the server's own pipeline object, called in a loop before and after the server rows).

    python -m bench.concurrency --model tiny-sd --size 512 --steps 4 --seconds 20

Each client sends one request at a time (a closed loop) for the given time; requests share model, size,
steps and guidance, so the server's dynamic batching can combine them. Compare `--max-batch 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from bench.common import (
    bare_kwargs,
    placed_pipeline,
    prepare_data_dir,
    print_table,
    running_server,
    summary,
    temp_dirs,
    write_result,
)


async def drive(base: str, key: str, clients: int, seconds: float, body: dict) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        n = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            response = await http.post("/api/v1/generate", json=body | {"prompt": f"client {index} image {n}",
                                                                          "seed": index * 1000 + n})
            n += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600,
                                 limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--max-batch", type=int, default=0, help="server max batch (0 = the device default)")
    parser.add_argument("--bare-images", type=int, default=20)
    args = parser.parse_args()
    guidance = 0.0 if "flux" in args.model else 5.0

    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir, (args.model,))
        # The server's own pipeline object called in a plain loop: the speedup is batching, not placement.
        pipe = placed_pipeline(data_dir, models_dir, args.model)
        pipe(**bare_kwargs("warm up", args.size, args.size, args.steps, 0, guidance))

        def bare_loop() -> float:
            started = time.perf_counter()
            for i in range(args.bare_images):
                pipe(**bare_kwargs(f"image {i}", args.size, args.size, args.steps, i, guidance))
            return args.bare_images / (time.perf_counter() - started)

        body = {"model": args.model, "width": args.size, "height": args.size, "steps": args.steps,
                "guidance_scale": guidance}
        env = {"IMAGESTUDIO_MAX_BATCH": str(args.max_batch)} if args.max_batch else {}
        bare_before = bare_loop()
        served = []
        with running_server(data_dir, models_dir, env) as (base, _proc, _ready):
            httpx.post(f"{base}/api/v1/generate", json=body | {"prompt": "warm up"},
                       headers={"Authorization": f"Bearer {key}"}, timeout=300).raise_for_status()
            for clients in (int(c) for c in args.clients.split(",")):
                latencies, errors = asyncio.run(drive(base, key, clients, args.seconds, body))
                served.append((clients, latencies, errors))
            bare_after = bare_loop()  # again, so drift of a shared machine shows
        bare_rate = (bare_before + bare_after) / 2
        rows = [{"clients": "bare loop", "images/s": f"{bare_rate:.2f} ({bare_before:.2f} / {bare_after:.2f})",
                 "speedup": "1.00"}]
        for clients, latencies, errors in served:
            rate = len(latencies) / args.seconds
            rows.append({"clients": clients, "images": len(latencies), "errors": errors,
                         "images/s": round(rate, 2), "speedup": f"{rate / bare_rate:.2f}", **summary(latencies)})

    print(f"\nConcurrency: {args.model}, {args.size}x{args.size}, {args.steps} steps, {args.seconds:.0f} s per row\n")
    print_table(rows, ["clients", "images", "errors", "images/s", "speedup", "p50_ms", "p95_ms"])
    write_result("concurrency", {"args": vars(args), "bare_images_per_s": round(bare_rate, 3),
                                 "bare_before_after": [round(bare_before, 3), round(bare_after, 3)], "rows": rows})


if __name__ == "__main__":
    main()
