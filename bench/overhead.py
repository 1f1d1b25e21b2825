"""Overhead: N images through a bare `pipe(...)` loop versus the running server over HTTP, one client.

    python -m bench.overhead --model tiny-sd --size 512 --steps 4 --images 30

Three paths make the same images (same prompts, size, steps and seed), each in a process of its own:
  (a) plain diffusers: `DiffusionPipeline.from_pretrained(...)` with its defaults, `pipe(...)` in a loop;
  (b) the server's pipeline called bare: the object the server's PipelineManager loads and places
      (dtype, VAE slicing, channels-last on CUDA...), `pipe(...)` on one worker thread, like the server;
  (c) the running server over HTTP, one client, each request sent when the last one was answered.
(b)/(a) is what the server's placement and process settings cost or save on the pipeline call itself;
(c)/(b) is what serving costs (HTTP, auth, metering, the job, PNG encoding); (c)/(a) is what a caller
gets from the server against writing the loop with diffusers' defaults. The paths take turns in
``--rounds`` rounds, so a shared machine's drift hits them alike. All three use the same torch threads
(``--threads``, default torch's); RSS is each process's, idle a few seconds after its last image.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from bench.common import (
    BareWorker,
    prepare_data_dir,
    print_table,
    rss_mb,
    running_server,
    summary,
    temp_dirs,
    write_result,
)

IDLE_S = 3.0  # past the server worker's idle_after_s, when it hands freed working memory back
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
    parser.add_argument("--threads", type=int, default=0, help="torch threads of every path; 0 = torch's default")
    args = parser.parse_args()
    guidance = 0.0 if "flux" in args.model else args.guidance
    per_round = max(1, args.images // args.rounds)

    import torch

    threads = args.threads or torch.get_num_threads()
    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir, (args.model,))
        workers = {kind: BareWorker(kind, args.model, data_dir, models_dir, threads) for kind in ("plain", "placed")}
        body = {"model": args.model, "width": args.size, "height": args.size, "steps": args.steps,
                "seed": args.seed, "guidance_scale": guidance}
        with running_server(data_dir, models_dir, {"IMAGESTUDIO_CPU_THREADS": str(threads)}) as (base, proc, _), \
                httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:

            def bare(worker: BareWorker):
                def call(prompt: str) -> float:
                    return worker.call(prompt=prompt, width=args.size, height=args.size, steps=args.steps,
                                       seed=args.seed, guidance=guidance)
                return call

            def served(prompt: str) -> float:
                started = time.perf_counter()
                client.post("/api/v1/generate", json=body | {"prompt": prompt}).raise_for_status()
                return time.perf_counter() - started

            calls = dict(zip(PATHS, (bare(workers["plain"]), bare(workers["placed"]), served), strict=True))
            for call in calls.values():
                call("warm up")
            times: dict[str, list[float]] = {path: [] for path in PATHS}
            for round_ in range(args.rounds):
                for path, call in calls.items():
                    for i in range(per_round):
                        times[path].append(call(f"a lighthouse at dusk {round_ * per_round + i}"))
            time.sleep(IDLE_S)  # RSS with the model loaded and nothing running, in every process alike
            rss = dict(zip(PATHS, (rss_mb(workers["plain"].proc.pid), rss_mb(workers["placed"].proc.pid),
                                   rss_mb(proc.pid)), strict=True))
        for worker in workers.values():
            worker.close()

    rates = {path: len(t) / sum(t) for path, t in times.items()}
    rows = [{"path": path, "images": len(t), "images/s": round(rates[path], 3), **summary(t),
             "rss_mb": round(rss[path])} for path, t in times.items()]
    print(f"\nOverhead: {args.model}, {args.size}x{args.size}, {args.steps} steps, seed {args.seed}, "
          f"{args.rounds} rounds, {threads} torch threads\n")
    print_table(rows, ["path", "images", "images/s", "p50_ms", "p95_ms", "mean_ms", "rss_mb"])
    pipeline_ratio = rates["plain diffusers pipe()"] / rates["server's pipe() bare"]
    overhead_ms = 1000 * (statistics.fmean(times["server over HTTP"]) - statistics.fmean(times["server's pipe() bare"]))
    rss_ratio = rss["server over HTTP"] / rss["plain diffusers pipe()"]
    print(f"\nserver's pipeline / plain pipe() = {pipeline_ratio:.3f}   (time per image; 1 = as fast as bare)")
    print(f"server RSS / plain RSS = {rss_ratio:.3f}   ({rss['server over HTTP']:.0f} / "
          f"{rss['plain diffusers pipe()']:.0f} MB)")
    print(f"overhead outside the pipeline = {overhead_ms:.1f} ms per request")
    served_rate = rates["server over HTTP"]
    ratio = served_rate / rates["server's pipe() bare"]
    ratio_plain = served_rate / rates["plain diffusers pipe()"]
    print(f"\nratio server / its pipe() bare = {ratio:.3f}   (what serving costs)")
    print(f"ratio server / plain diffusers = {ratio_plain:.3f}")
    write_result("overhead", {"args": vars(args), "rows": rows, "ratio": round(ratio, 4),
                              "ratio_vs_plain_diffusers": round(ratio_plain, 4),
                              "pipeline_ratio": round(pipeline_ratio, 4), "rss_ratio": round(rss_ratio, 4),
                              "overhead_ms": round(overhead_ms, 1), "threads": threads})


if __name__ == "__main__":
    main()
