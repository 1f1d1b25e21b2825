"""Full-size architectures offline: the real SDXL and FLUX.1 pipelines built from their published
configs with random weights, so a GPU benchmark runs exactly the compute of the real model without
downloading a byte of weights.

    python -m bench.fullsize --arch sdxl --params-only          # count parameters (meta device, any machine)
    python -m bench.fullsize --arch flux-schnell --batches 1,4   # time batch sizes on the GPU
    python -m bench.fullsize --arch sd15 --save                  # write the SD 1.5 folder the CPU benches use

The timing mode compares one request per pipeline call with batched calls (what the server's dynamic
batching does), at the model's native size and default steps, in bf16 (fp16 where bf16 is missing).
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from bench.common import print_table, write_result

# Published configs (unet/config.json, vae/config.json, text encoder configs) of the real repositories.
SDXL_UNET = dict(
    act_fn="silu", addition_embed_type="text_time", addition_time_embed_dim=256, attention_head_dim=[5, 10, 20],
    block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5,
    norm_num_groups=32, out_channels=4, projection_class_embeddings_input_dim=2816, sample_size=128,
    transformer_layers_per_block=[1, 2, 10], up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    use_linear_projection=True,
)
SD15_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280], center_input_sample=False,
    cross_attention_dim=768, down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5,
    norm_num_groups=32, out_channels=4, sample_size=64, up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
)
SD15_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)
SDXL_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    norm_num_groups=32, sample_size=1024, scaling_factor=0.13025, force_upcast=True,
)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
              bos_token_id=0, eos_token_id=1, pad_token_id=1)
CLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                 num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
                 bos_token_id=0, eos_token_id=1, pad_token_id=1)
FLUX_SCHNELL_TRANSFORMER = dict(
    attention_head_dim=128, guidance_embeds=False, in_channels=64, joint_attention_dim=4096, num_attention_heads=24,
    num_layers=19, num_single_layers=38, patch_size=1, pooled_projection_dim=768, axes_dims_rope=[16, 56, 56],
)
FLUX_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, out_channels=3, latent_channels=16, layers_per_block=2,
    norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
    use_post_quant_conv=False,
)
T5_XXL_ENCODER = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, is_gated_act=True,
                      dense_act_fn="gelu_new", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)

ARCHS = {
    "sd15": {"size": 512, "steps": 25, "guidance": 7.5, "slug": "bench-sd15"},
    "sdxl": {"size": 1024, "steps": 30, "guidance": 7.0, "slug": "bench-sdxl"},
    "flux-schnell": {"size": 1024, "steps": 4, "guidance": 0.0, "slug": "flux-schnell"},
}


@contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build(arch: str, device: str = "meta", dtype: torch.dtype = torch.bfloat16):
    """The real architecture with random weights, created directly on ``device`` in ``dtype``."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        ByT5Tokenizer,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    from engine.generation.tiny_models import build_clip_tokenizer

    # Schedulers keep their tables on the CPU: made outside the device context.
    schedulers = {
        "sd15": EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1),
        "sdxl": EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1),
        "flux-schnell": FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
    }
    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        if arch == "sd15":
            return StableDiffusionPipeline(
                unet=UNet2DConditionModel(**SD15_UNET), vae=AutoencoderKL(**SD15_VAE),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)), tokenizer=build_clip_tokenizer(),
                scheduler=schedulers[arch], safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)
        if arch == "sdxl":
            return StableDiffusionXLPipeline(
                unet=UNet2DConditionModel(**SDXL_UNET), vae=AutoencoderKL(**SDXL_VAE),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG)),
                tokenizer=build_clip_tokenizer(), tokenizer_2=build_clip_tokenizer(), scheduler=schedulers[arch])
        if arch == "flux-schnell":
            return FluxPipeline(
                transformer=FluxTransformer2DModel(**FLUX_SCHNELL_TRANSFORMER), vae=AutoencoderKL(**FLUX_VAE),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)), tokenizer=build_clip_tokenizer(),
                text_encoder_2=T5EncoderModel(T5Config(**T5_XXL_ENCODER)), tokenizer_2=ByT5Tokenizer(),
                scheduler=schedulers[arch])
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


# Where the real-size benchmark models are written once (4.3 GB for SD 1.5 in float32) and reused by every run.
BENCH_MODELS = Path(os.environ.get("IMAGESTUDIO_BENCH_MODELS", Path.home() / ".cache" / "imagestudio-bench"))
SAVED_ARCHS = {"bench-sd15": "sd15", "bench-sdxl": "sdxl"}  # bench model slug -> architecture


def model_folder(slug: str) -> Path:
    """The diffusers folder of a real-size benchmark model (``bench-sd15``, ``bench-sdxl``), written on first use
    with ``save_pretrained``: the server and bare diffusers then load the same files with ``from_pretrained``."""
    arch = SAVED_ARCHS[slug]
    folder = BENCH_MODELS / slug
    if not (folder / "model_index.json").exists():
        print(f"building {slug} ({arch} architecture, random weights, float32) in {folder} ...", flush=True)
        pipe = build(arch, "cpu", torch.float32)
        partial = folder.with_name(folder.name + ".partial")
        pipe.save_pretrained(partial, safe_serialization=True)
        partial.rename(folder)  # whole folder or none: an interrupted build is not taken for a model
    return folder


def parameter_counts(pipe) -> dict[str, int]:
    return {name: sum(p.numel() for p in module.parameters())
            for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}


def time_batches(pipe, arch: str, batches: list[int], repeats: int) -> list[dict]:
    spec = ARCHS[arch]
    rows = []
    for batch in batches:
        kwargs = dict(prompt=[f"a photo, variation {i}" for i in range(batch)], width=spec["size"],
                      height=spec["size"], num_inference_steps=spec["steps"], guidance_scale=spec["guidance"])
        with torch.inference_mode():
            pipe(**kwargs, generator=[torch.Generator("cpu").manual_seed(i) for i in range(batch)])  # warm-up
            torch.cuda.synchronize()
            started = time.perf_counter()
            for r in range(repeats):
                pipe(**kwargs, generator=[torch.Generator("cpu").manual_seed(r * 100 + i) for i in range(batch)])
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        rows.append({"batch": batch, "images/s": round(batch * repeats / elapsed, 3),
                     "s/call": round(elapsed / repeats, 3),
                     "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)})
    base = rows[0]["images/s"]
    for row in rows:
        row["speedup"] = f"{row['images/s'] / base:.2f}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="sdxl")
    parser.add_argument("--params-only", action="store_true", help="build on the meta device and count parameters")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", action="store_true", help="write the model folder the CPU benches load (sd15, sdxl)")
    args = parser.parse_args()

    if args.save:
        slug = ARCHS[args.arch]["slug"]
        if slug not in SAVED_ARCHS:
            raise SystemExit(f"--save writes {', '.join(SAVED_ARCHS)}; {args.arch} is built in memory only")
        print(model_folder(slug))
        return

    if args.params_only:
        counts = parameter_counts(build(args.arch, "meta"))
        rows = [{"component": k, "parameters": f"{v / 1e9:.3f} B"} for k, v in counts.items()]
        print(f"\n{args.arch}: real architecture, random weights\n")
        print_table(rows, ["component", "parameters"])
        write_result(f"fullsize-params-{args.arch}", {"counts": counts})
        return
    if not torch.cuda.is_available():
        raise SystemExit("timing full-size architectures needs a CUDA GPU; use --params-only here")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    started = time.perf_counter()
    pipe = build(args.arch, "cuda", dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.enable_slicing()
    build_s = time.perf_counter() - started
    rows = time_batches(pipe, args.arch, [int(b) for b in args.batches.split(",")], args.repeats)
    spec = ARCHS[args.arch]
    print(f"\n{args.arch} on {torch.cuda.get_device_name(0)}, {dtype}, {spec['size']}px, {spec['steps']} steps "
          f"(built in {build_s:.1f} s)\n")
    print_table(rows, ["batch", "images/s", "s/call", "speedup", "peak_gib"])
    write_result(f"fullsize-{args.arch}", {"args": vars(args), "dtype": str(dtype), "rows": rows})


if __name__ == "__main__":
    main()
