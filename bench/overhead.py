"""Overhead: N images through a bare `pipe(...)` loop versus the running server over HTTP, one client.

    python -m bench.overhead --model tiny-sd --size 512 --steps 4 --images 30

Three paths make the same images (same prompts, size, steps and seed):
  (a) plain diffusers: `DiffusionPipeline.from_pretrained(...)` with its defaults, `pipe(...)` in a loop;
  (b) the server's pipeline called bare: the object the server's PipelineManager loads and places
      (channels-last, VAE slicing...), `pipe(...)` in a loop, in this process;
  (c) the running server over HTTP, one client, each request sent when the last one was answered.
(c)/(b) is what serving costs (HTTP, auth, metering, the job, PNG encoding); (c)/(a) is what a caller
gets from the server against writing the loop with diffusers' defaults. The paths take turns in
``--rounds`` rounds, so a shared machine's drift hits them alike.
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.common import (
    bare_kwargs,
    bare_pipeline,
    placed_pipeline,
    prepare_data_dir,
    print_table,
    running_server,
    summary,
    temp_dirs,
    write_result,
)

PATHS = ("plain diffusers pipe()", "server's pipe() bare", "server over HTTP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=30, help="per path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--guidance", type=float, default=5.0)
    args = parser.parse_args()
    guidance = 0.0 if "flux" in args.model else args.guidance
    per_round = max(1, args.images // args.rounds)

    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir, (args.model,))
        plain, placed = bare_pipeline(models_dir, args.model), placed_pipeline(data_dir, models_dir, args.model)
        body = {"model": args.model, "width": args.size, "height": args.size, "steps": args.steps,
                "seed": args.seed, "guidance_scale": guidance}
        with running_server(data_dir, models_dir) as (base, _proc, _ready), httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:

            def bare(pipe):
                return lambda prompt: pipe(**bare_kwargs(prompt, args.size, args.size, args.steps, args.seed, guidance))

            def served(prompt: str) -> None:
                client.post("/api/v1/generate", json=body | {"prompt": prompt}).raise_for_status()

            calls = dict(zip(PATHS, (bare(plain), bare(placed), served), strict=True))
            for call in calls.values():
                call("warm up")
            times: dict[str, list[float]] = {path: [] for path in PATHS}
            for round_ in range(args.rounds):
                for path, call in calls.items():
                    for i in range(per_round):
                        started = time.perf_counter()
                        call(f"a lighthouse at dusk {round_ * per_round + i}")
                        times[path].append(time.perf_counter() - started)

    rates = {path: len(t) / sum(t) for path, t in times.items()}
    rows = [{"path": path, "images": len(t), "images/s": round(rates[path], 3), **summary(t)} for path, t in times.items()]
    print(f"\nOverhead: {args.model}, {args.size}x{args.size}, {args.steps} steps, seed {args.seed}, "
          f"{args.rounds} rounds\n")
    print_table(rows, ["path", "images", "images/s", "p50_ms", "p95_ms", "mean_ms"])
    served_rate = rates["server over HTTP"]
    ratio = served_rate / rates["server's pipe() bare"]
    ratio_plain = served_rate / rates["plain diffusers pipe()"]
    print(f"\nratio server / its pipe() bare = {ratio:.3f}   (what serving costs)")
    print(f"ratio server / plain diffusers = {ratio_plain:.3f}")
    write_result("overhead", {"args": vars(args), "rows": rows, "ratio": round(ratio, 4),
                              "ratio_vs_plain_diffusers": round(ratio_plain, 4)})


if __name__ == "__main__":
    main()
