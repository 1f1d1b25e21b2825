import json

import torch
from diffusers import DiffusionPipeline, FluxPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file

from engine.generation.tiny_models import TINY_MODEL_SLUGS, build_clip_tokenizer, ensure_tiny_model


def test_tiny_models_are_saved_as_diffusers_folders(models_dir):
    for slug in TINY_MODEL_SLUGS:
        folder = models_dir / slug
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] in {"StableDiffusionPipeline", "StableDiffusionXLPipeline", "FluxPipeline",
                                        "StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline",
                                        "StableDiffusionUpscalePipeline"}
        assert list(folder.glob("vae/*.safetensors"))


def test_reload_through_from_pretrained_and_generate(models_dir):
    expected = {"tiny-sd": StableDiffusionPipeline, "tiny-sdxl": StableDiffusionXLPipeline, "tiny-flux": FluxPipeline}
    for slug, cls in expected.items():
        pipe = DiffusionPipeline.from_pretrained(models_dir / slug, local_files_only=True)
        assert type(pipe) is cls
        pipe.set_progress_bar_config(disable=True)
        image = pipe("a red fox", num_inference_steps=2, height=256, width=256,
                     generator=torch.Generator("cpu").manual_seed(0)).images[0]
        assert image.size == (256, 256)
        # Four VAE blocks: a 256 px image is a 32x32 latent, as with real models.
        assert pipe.vae_scale_factor == 8


def test_builds_are_identical(tmp_path, models_dir):
    rebuilt = ensure_tiny_model("tiny-sd", tmp_path)
    for part in ("unet", "vae", "text_encoder"):
        a = load_file(next((models_dir / "tiny-sd" / part).glob("*.safetensors")))
        b = load_file(next((rebuilt / part).glob("*.safetensors")))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_existing_build_is_reused_and_partial_one_replaced(tmp_path):
    partial = tmp_path / ".tiny-flux.partial"
    partial.mkdir()
    (partial / "junk").write_text("left by a crash")
    folder = ensure_tiny_model("tiny-flux", tmp_path)
    assert not partial.exists()
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_model("tiny-flux", tmp_path) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp


def test_clip_tokenizer_needs_no_files_and_handles_any_text():
    tokenizer = build_clip_tokenizer()
    ids = tokenizer("héllo wörld 🦊 " * 30, truncation=True, max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]  # CLIP uses <|endoftext|> for unknown, pad and end
