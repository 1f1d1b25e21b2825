"""Tiny offline models: real diffusers architectures with random weights.

They are built from small configs (the way diffusers' own tests build
"dummy components"), seeded so every build is identical, written once with
``save_pretrained`` and then loaded through the same ``from_pretrained`` path
as real hub models. They produce noise-like pictures, but every step of a
real generation runs: tokenizer, text encoder, denoiser, scheduler, VAE.

The VAE has four blocks (scale factor 8) like the real ones, so a 256 px
image is a 32x32 latent and a 2-step generation stays well under a second
on two CPU cores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

TINY_MODEL_SLUGS = ("tiny-sd", "tiny-sdxl", "tiny-flux", "tiny-sd-inpaint", "tiny-sdxl-inpaint", "tiny-sd-upscaler")

# The byte-level alphabet of CLIP's BPE (GPT-2's bytes_to_unicode), so every
# prompt, emoji included, tokenizes without an unknown token.
def _byte_alphabet() -> list[str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def build_clip_tokenizer(folder: Path | None = None):
    """A CLIP tokenizer with a byte-level vocabulary: no download needed."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _byte_alphabet():
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, pad_token="<|endoftext|>")


def _clip_text_config(**overrides):
    from transformers import CLIPTextConfig

    config = dict(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=600,
        projection_dim=32, max_position_embeddings=77,
    )
    config.update(overrides)
    return CLIPTextConfig(**config)


def _tiny_vae(latent_channels: int = 4, **overrides):
    from diffusers import AutoencoderKL

    config = dict(
        block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels, norm_num_groups=4, layers_per_block=1, sample_size=256,
    )
    config.update(overrides)
    return AutoencoderKL(**config)


def build_tiny_sd(inpaint: bool = False):
    """``inpaint``: the inpainting variant, whose UNet takes the mask and the masked image's latents too
    (4 + 1 + 4 = 9 input channels), like stable-diffusion-inpainting."""
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=9 if inpaint else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
    )
    torch.manual_seed(0)
    vae = _tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config())
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipeline_cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    return pipeline_cls(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=build_clip_tokenizer(),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_tiny_sdxl(inpaint: bool = False):
    """``inpaint``: the 9-channel inpainting variant, like stable-diffusion-xl-1.0-inpainting-0.1."""
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=9 if inpaint else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
        cross_attention_dim=64, norm_num_groups=8,
    )
    torch.manual_seed(0)
    vae = _tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config(hidden_act="gelu"))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(hidden_act="gelu"))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing"
    )
    components = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": build_clip_tokenizer(),
                  "text_encoder_2": text_encoder_2, "tokenizer_2": build_clip_tokenizer(), "scheduler": scheduler}
    if inpaint:
        return StableDiffusionXLInpaintPipeline(**components, requires_aesthetics_score=False)
    return StableDiffusionXLPipeline(**components)


def build_tiny_sd_upscaler():
    """Stability's x4 upscaler in miniature: the UNet denoises latents the size of the low-resolution image
    concatenated with that image (4 + 3 = 7 channels), conditioned on the noise level added to it; a 3-block VAE
    (scale factor 4) decodes them at four times the size."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4, num_class_embeds=1000,
    )
    torch.manual_seed(0)
    vae = _tiny_vae(block_out_channels=(8, 8, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                    up_block_types=("UpDecoderBlock2D",) * 3, scaling_factor=0.08333)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config())
    return StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_clip_tokenizer(), unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )


def build_tiny_flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import ByT5Tokenizer, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6), guidance_embeds=False,
    )
    torch.manual_seed(0)
    vae = _tiny_vae(latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                    shift_factor=0.0609, scaling_factor=1.5035)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config(hidden_act="gelu"))
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=384, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=vae, text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(), text_encoder_2=text_encoder_2, tokenizer_2=ByT5Tokenizer(),
        transformer=transformer,
    )


TINY_BUILDERS: dict[str, Callable] = {
    "tiny-sd": build_tiny_sd,
    "tiny-sdxl": build_tiny_sdxl,
    "tiny-flux": build_tiny_flux,
    "tiny-sd-inpaint": lambda: build_tiny_sd(inpaint=True),
    "tiny-sdxl-inpaint": lambda: build_tiny_sdxl(inpaint=True),
    "tiny-sd-upscaler": build_tiny_sd_upscaler,
}

_MARKER = "imagestudio_tiny.json"


def ensure_tiny_model(slug: str, models_dir: Path) -> Path:
    """Build the tiny model once into ``models_dir/slug`` and return the folder.

    The folder is written under a temporary name and renamed when complete, so
    a crash mid-write never leaves a half model that looks finished.
    """
    target = Path(models_dir) / slug
    if (target / _MARKER).exists():
        return target
    builder = TINY_BUILDERS[slug]
    tmp = target.with_name(f".{slug}.partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    pipe = builder()
    pipe.save_pretrained(tmp, safe_serialization=True)
    (tmp / _MARKER).write_text(json.dumps({"slug": slug, "seed": 0}))
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    return target
