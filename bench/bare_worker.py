"""One pipeline called bare in a process of its own, driven over stdin/stdout by a benchmark (bench/common.py
BareWorker): its timings are not the benchmark process's, and its RSS is that pipeline's alone.

    python -m bench.bare_worker plain|placed --model M --models-dir D --data-dir X --threads N

plain: `DiffusionPipeline.from_pretrained(...)` with diffusers' defaults, in a plain Python process.
placed: the very pipeline object the server runs, loaded and placed by its ImageEngine (so with the server's
process settings too: malloc tuning, threads), called on a worker thread like the server's.

Each stdin line is a JSON object of bare_kwargs' arguments; each answer a JSON line {"seconds", "rss_mb"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import bare_kwargs, bare_pipeline, placed_pipeline, rss_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("plain", "placed"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    import torch

    if args.kind == "plain":
        torch.set_num_threads(args.threads)
        pipe = bare_pipeline(args.models_dir, args.model)
    else:
        pipe = placed_pipeline(args.data_dir, args.models_dir, args.model, cpu_threads=args.threads)
    # placed: one long-lived worker thread, as the server's JobRunner calls its pipeline; plain: the main thread
    worker = ThreadPoolExecutor(max_workers=1) if args.kind == "placed" else None
    print(json.dumps({"ready": True, "rss_mb": rss_mb()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)

        def run(request=request) -> float:
            started = time.perf_counter()
            pipe(**bare_kwargs(**request))
            return time.perf_counter() - started

        seconds = worker.submit(run).result() if worker else run()
        print(json.dumps({"seconds": seconds, "rss_mb": rss_mb()}), flush=True)

if __name__ == "__main__":
    main()
