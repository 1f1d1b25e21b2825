"""Cold start: server start to ready (no model loaded), then the first image; model load time in the
server against a bare `from_pretrained`.

    python -m bench.cold_start --model tiny-sdxl
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.common import bare_pipeline, prepare_data_dir, print_table, running_server, temp_dirs, write_result


def seconds(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--second-model", default="tiny-sdxl")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    with temp_dirs() as (data_dir, models_dir):
        key = prepare_data_dir(data_dir, models_dir, (args.model,))
        bare_load = seconds(bare_pipeline, models_dir, args.model)
        bare_load_second = seconds(bare_pipeline, models_dir, args.second_model)

        with running_server(data_dir, models_dir) as (base, _proc, ready_s):
            headers = {"Authorization": f"Bearer {key}"}

            def generate(model: str) -> None:
                body = {"prompt": "first light", "model": model, "width": args.size, "height": args.size}
                httpx.post(f"{base}/api/v1/generate", json=body, headers=headers, timeout=600).raise_for_status()

            first_image, warm_image = seconds(generate, args.model), seconds(generate, args.model)
            # A second model: diffusers is imported by now, so this is the model's load alone.
            first_second, warm_second = seconds(generate, args.second_model), seconds(generate, args.second_model)

    rows = [{"step": "server start → ready (no model loaded)", "seconds": round(ready_s, 2)},
            {"step": f"first image ({args.model}, includes its load)", "seconds": round(first_image, 3)},
            {"step": "second image (model warm)", "seconds": round(warm_image, 3)},
            {"step": "model load inside the server (first − second)", "seconds": round(first_image - warm_image, 3)},
            {"step": "bare from_pretrained + .to(device)", "seconds": round(bare_load, 3)},
            {"step": f"{args.second_model} load inside the server (first − second image)",
             "seconds": round(first_second - warm_second, 3)},
            {"step": f"{args.second_model} bare from_pretrained + .to(device)", "seconds": round(bare_load_second, 3)}]
    print(f"\nCold start: {args.model}\n")
    print_table(rows, ["step", "seconds"])
    write_result("cold_start", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
