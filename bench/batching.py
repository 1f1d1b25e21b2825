"""Batching: what one pipeline call for B images costs against B calls of one, without the server.

    python -m bench.batching --model tiny-sd --size 512 --steps 4 --batches 1,2,4

The server's own pipeline object (as its PipelineManager places it) and its own `run_pipeline` (a
generator per image, the way dynamic batching calls it). Batch sizes take turns over ``--reps``
repetitions; the median is reported. The gain is the ceiling for what dynamic batching can add on this
device; `bench.concurrency` shows what the server gets of it.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import placed_pipeline, prepare_data_dir, print_table, register_bench_models, temp_dirs, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    from engine.data.db import init_db, make_engine
    from engine.generation.catalog import Catalog
    from engine.generation.params import GenerationParams, check_inputs, run_pipeline

    batches = [int(b) for b in args.batches.split(",")]
    db = make_engine("sqlite://")
    init_db(db)
    catalog = Catalog(db)
    with temp_dirs() as (data_dir, models_dir):
        prepare_data_dir(data_dir, models_dir, (args.model,))
        register_bench_models(catalog, models_dir, (args.model,))
        spec = catalog.get(args.model)
        guidance = 0.0 if spec.family == "flux" else 5.0
        params = [check_inputs(GenerationParams(prompt=f"a lighthouse at dusk {i}", width=args.size, height=args.size,
                                                steps=args.steps, seed=i, guidance_scale=guidance), spec)
                  for i in range(max(batches))]
        pipe = placed_pipeline(data_dir, models_dir, args.model)
        run_pipeline(pipe, spec, params[:1])  # warm up
        times: dict[int, list[float]] = {b: [] for b in batches}
        for _ in range(args.reps):
            for b in batches:
                started = time.perf_counter()
                run_pipeline(pipe, spec, params[:b])
                times[b].append(time.perf_counter() - started)

    one = statistics.median(times[batches[0]]) / batches[0]
    rows = []
    for b in batches:
        call = statistics.median(times[b])
        rows.append({"batch": b, "call_ms": round(call * 1000, 1), "per_image_ms": round(call / b * 1000, 1),
                     "images/s": round(b / call, 2), "gain": round(one * b / call, 2)})
    print(f"\nBatching: {args.model}, {args.size}x{args.size}, {args.steps} steps, median of {args.reps}\n")
    print_table(rows, ["batch", "call_ms", "per_image_ms", "images/s", "gain"])
    write_result("batching", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
