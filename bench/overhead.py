"""Overhead: N images through a bare `pipe(...)` loop versus the running server over HTTP, one client.

    python -m bench.overhead --model tiny-sd --size 512 --steps 4 --images 30
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.common import (bare_kwargs, bare_pipeline, prepare_data_dir, print_table, running_server, summary,
                          temp_dirs, write_result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--guidance", type=float, default=5.0)
    args = parser.parse_args()

    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir)
        # (a) the bare loop, warmed up once, in this process
        pipe = bare_pipeline(models_dir, args.model)
        guidance = 0.0 if "flux" in args.model else args.guidance
        pipe(**bare_kwargs("warm up", args.size, args.size, args.steps, 0, guidance))
        bare = []
        for i in range(args.images):
            started = time.perf_counter()
            pipe(**bare_kwargs(f"a lighthouse at dusk {i}", args.size, args.size, args.steps, args.seed, guidance))
            bare.append(time.perf_counter() - started)
        del pipe

        # (b) the server over HTTP, one client, the same requests
        body = {"model": args.model, "width": args.size, "height": args.size, "steps": args.steps,
                "seed": args.seed, "guidance_scale": guidance}
        with running_server(data_dir, models_dir) as (base, _proc, _ready), httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
            client.post("/api/v1/generate", json=body | {"prompt": "warm up"}).raise_for_status()
            served = []
            for i in range(args.images):
                started = time.perf_counter()
                client.post("/api/v1/generate", json=body | {"prompt": f"a lighthouse at dusk {i}"}).raise_for_status()
                served.append(time.perf_counter() - started)

    bare_rate, served_rate = len(bare) / sum(bare), len(served) / sum(served)
    rows = [{"path": "bare pipe() loop", "images": len(bare), "images/s": round(bare_rate, 2), **summary(bare)},
            {"path": "server over HTTP", "images": len(served), "images/s": round(served_rate, 2), **summary(served)}]
    print(f"\nOverhead: {args.model}, {args.size}x{args.size}, {args.steps} steps, seed {args.seed}\n")
    print_table(rows, ["path", "images", "images/s", "p50_ms", "p95_ms", "mean_ms"])
    ratio = served_rate / bare_rate
    print(f"\nratio server/bare = {ratio:.3f}")
    write_result("overhead", {"args": vars(args), "rows": rows, "ratio": round(ratio, 4)})


if __name__ == "__main__":
    main()
