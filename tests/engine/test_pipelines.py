import pytest

from engine.data.db import init_db, make_engine
from engine.errors import ModelUnavailable
from engine.generation.catalog import Catalog
from engine.generation.pipelines import PipelineManager, WeightsState


@pytest.fixture
def catalog(tmp_path):
    db = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    init_db(db)
    return Catalog(db)


def manager(catalog, models_dir, budget=10**12, downloads=False):
    import torch

    return PipelineManager(catalog, models_dir, "cpu", torch.float32, budget, allow_downloads=downloads)


def test_lazy_load_once_and_reuse(catalog, models_dir):
    pipes = manager(catalog, models_dir)
    assert pipes.loaded() == []
    first = pipes.get("tiny-sd")
    assert pipes.get("tiny-sd") is first and first.bytes > 0
    assert pipes.state(catalog.get("tiny-sd"))[0] == WeightsState.LOADED


def test_least_recently_used_is_evicted_to_keep_the_budget(catalog, models_dir):
    probe = manager(catalog, models_dir)
    sizes = {slug: probe.get(slug).bytes for slug in ("tiny-sd", "tiny-sdxl", "tiny-flux")}
    budget = sizes["tiny-sd"] + sizes["tiny-sdxl"] + 1  # room for two of the three at most
    pipes = manager(catalog, models_dir, budget=budget)
    pipes.get("tiny-sd")
    pipes.get("tiny-sdxl")
    pipes.get("tiny-sd")  # now tiny-sdxl is the least recently used
    pipes.get("tiny-flux")
    loaded = [p.spec.slug for p in pipes.loaded()]
    assert "tiny-sdxl" not in loaded and loaded[-1] == "tiny-flux"
    assert pipes.used_bytes() <= budget


def test_concurrent_first_use_loads_once(catalog, models_dir, monkeypatch):
    import threading

    pipes = manager(catalog, models_dir)
    calls = []
    real_load = pipes._load
    monkeypatch.setattr(pipes, "_load", lambda spec: calls.append(spec.slug) or real_load(spec))
    threads = [threading.Thread(target=pipes.get, args=("tiny-flux",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["tiny-flux"]


def test_absent_weights_offline_say_how_to_pull(catalog, tmp_path):
    pipes = manager(catalog, tmp_path / "empty")
    spec = catalog.get("flux-schnell")
    state, reason = pipes.state(spec)
    assert state == WeightsState.UNAVAILABLE and "imagestudio models pull flux-schnell" in reason
    with pytest.raises(ModelUnavailable, match="imagestudio models pull flux-schnell"):
        pipes.get("flux-schnell")
    with pytest.raises(ModelUnavailable, match="offline"):
        pipes.pull("flux-schnell")


def test_downloadable_when_the_hub_may_be_used(catalog, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    pipes = manager(catalog, tmp_path / "empty", downloads=True)
    assert pipes.state(catalog.get("stable-diffusion"))[0] == WeightsState.DOWNLOADABLE
    assert pipes.state(catalog.get("phoenix-1"))[0] == WeightsState.UNAVAILABLE


def test_edit_pipeline_shares_the_modules(catalog, models_dir):
    loaded = manager(catalog, models_dir).get("tiny-sd")
    edit = loaded.edit_pipe()
    assert type(edit).__name__ == "StableDiffusionImg2ImgPipeline" and edit.unet is loaded.pipe.unet


def _storages(pipe) -> dict[int, int]:
    """Every distinct tensor storage the pipeline's modules hold, by address: its bytes."""
    import torch

    found = {}
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in [*component.parameters(), *component.buffers()]:
                storage = tensor.untyped_storage()
                found[storage.data_ptr()] = storage.nbytes()
    return found


@pytest.mark.parametrize("slug", ["tiny-sd", "tiny-sdxl", "tiny-flux"])
def test_placement_keeps_one_copy_of_the_weights(catalog, models_dir, slug):
    """Placing a pipeline (device, dtype, memory format, VAE slicing) converts no weight into a second copy:
    the tensors it serves from are the ones from_pretrained made, and they hold just the model's bytes."""
    import torch

    from engine.generation.pipelines import diffusers_class, module_bytes
    from engine.generation.tiny_models import ensure_tiny_model

    pipes = manager(catalog, models_dir)
    spec = catalog.get(slug)
    pipe = diffusers_class(spec.pipeline_class).from_pretrained(
        str(ensure_tiny_model(slug, models_dir)), dtype=torch.float32, local_files_only=True)
    before = _storages(pipe)
    assert pipes._place(pipe, spec) == module_bytes(pipe)
    after = _storages(pipe)
    assert after == before  # the same storages: nothing copied, nothing kept beside them
    assert sum(after.values()) == module_bytes(pipe)
    loaded = pipes.get(slug)  # and through the manager's own load path
    assert sum(_storages(loaded.pipe).values()) == loaded.bytes


@pytest.mark.parametrize("slug", ["tiny-sd", "tiny-sdxl", "tiny-flux"])
def test_inpainting_repaints_only_the_white_of_the_mask(catalog, models_dir, slug):
    """Diffusers' inpaint pipeline of each family, sharing the loaded modules. Two prompts, one seed: the black
    (kept) side comes out the same, the white (repainted) side follows the prompt."""
    import numpy as np
    from PIL import Image

    from engine.generation.params import GenerationParams, check_inputs, run_pipeline

    loaded = manager(catalog, models_dir).get(slug)
    inpaint = loaded.inpaint_pipe()
    assert type(inpaint).__name__ == catalog.get(slug).inpaint_pipeline_class
    assert inpaint.vae is loaded.pipe.vae
    source = Image.effect_noise((256, 256), 60).convert("RGB")
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (128, 0, 256, 256))  # the right half is repainted

    def inpainted(prompt):
        params = check_inputs(GenerationParams(prompt=prompt, model=slug, width=256, height=256, steps=2, seed=3),
                              catalog.get(slug))
        return np.asarray(run_pipeline(inpaint, loaded.spec, [params], init_images=[source], strength=1.0,
                                       mask=mask)[0]).astype(int)

    first, second = inpainted("a blue door"), inpainted("a field of sunflowers at noon")
    assert first.shape == (256, 256, 3)
    kept = np.abs(first[:, :64] - second[:, :64]).mean()
    repainted = np.abs(first[:, 192:] - second[:, 192:]).mean()
    assert repainted > 4 * kept + 0.5, (kept, repainted)


@pytest.mark.parametrize("slug", ["tiny-sd", "tiny-flux"])
def test_a_cancel_ends_the_call_within_a_step(catalog, models_dir, slug):
    """Checked before each block of the denoiser: a cancel doesn't wait for the step (38 s for four 1024² images on
    a CPU) to finish. Here it comes during the first step: no step completes."""
    from engine.errors import JobCancelled
    from engine.generation.params import GenerationParams, check_inputs, run_pipeline

    loaded = manager(catalog, models_dir).get(slug)
    params = check_inputs(GenerationParams(prompt="x", model=slug, width=256, height=256, steps=4, seed=1),
                          catalog.get(slug))
    blocks_run, steps_done = [], []

    def should_stop() -> bool:
        blocks_run.append(1)
        return len(blocks_run) > 1  # cancelled while the first step is under way (before its second block)

    with pytest.raises(JobCancelled):
        run_pipeline(loaded.pipe, loaded.spec, [params], on_step=lambda step, total: steps_done.append(step) or True,
                     should_stop=should_stop)
    assert steps_done == [] and len(blocks_run) == 2
    # The hooks are gone afterwards: the next call runs to the end.
    assert len(run_pipeline(loaded.pipe, loaded.spec, [params], should_stop=lambda: False)) == 1
    denoiser = getattr(loaded.pipe, "unet", None) or loaded.pipe.transformer
    assert all(not module._forward_pre_hooks for module in denoiser.modules())


@pytest.mark.parametrize("slug", ["tiny-sd", "tiny-sdxl"])
def test_masks_go_through_the_dedicated_inpainting_checkpoint(catalog, models_dir, slug):
    """SD and SDXL have inpainting checkpoints whose UNet takes the mask and the masked image (9 input channels):
    a mask uses it when its weights are here, and the black of the mask still comes out as it was."""
    import numpy as np
    from PIL import Image

    from engine.generation.params import GenerationParams, check_inputs, run_pipeline

    pipes = manager(catalog, models_dir)
    spec = catalog.get(slug)
    inpaint = pipes.inpaint_pipe(spec)
    assert inpaint.unet.config.in_channels == 9
    assert type(inpaint).__name__ == spec.inpaint_pipeline_class
    assert [p.spec.slug for p in pipes.loaded()] == [spec.inpaint_model]  # the base model isn't loaded for it
    source = Image.effect_noise((256, 256), 60).convert("RGB")
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (128, 0, 256, 256))

    def inpainted(prompt):
        params = check_inputs(GenerationParams(prompt=prompt, model=slug, width=256, height=256, steps=2, seed=3),
                              spec)
        return np.asarray(run_pipeline(inpaint, spec, [params], init_images=[source], strength=1.0,
                                       mask=mask)[0]).astype(int)

    first, second = inpainted("a blue door"), inpainted("a field of sunflowers at noon")
    # Outside the mask (and its few feathered pixels) the source itself: this UNet redraws everything.
    assert (first[:, :120] == np.asarray(source)[:, :120]).all()
    assert np.abs(first[:, 192:] - second[:, 192:]).mean() > 0.5


def test_without_the_checkpoint_a_mask_uses_the_model_itself(catalog, models_dir):
    """Stable Diffusion XL names sdxl-inpainting, absent here (offline): its own weights inpaint."""
    from dataclasses import replace

    pipes = manager(catalog, models_dir)
    spec = replace(catalog.get("tiny-sdxl"), inpaint_model="sdxl-inpainting")
    assert not pipes.weights_here(catalog.get("sdxl-inpainting"))
    inpaint = pipes.inpaint_pipe(spec)
    assert inpaint.unet.config.in_channels == 4 and inpaint.unet is pipes.get("tiny-sdxl").pipe.unet


def test_the_x4_upscaler_makes_four_times_the_size(catalog, models_dir):
    from dataclasses import replace

    from PIL import Image

    from engine.errors import InvalidRequest
    from engine.generation.params import ResolvedParams, run_pipeline, upscaled_x4

    upscaler = catalog.get("tiny-sd-upscaler")
    assert catalog.upscaler_for(catalog.get("tiny-sd")) == upscaler
    assert catalog.upscaler_for(catalog.get("stable-diffusion")).slug == "sd-x4-upscaler"
    made = ResolvedParams(prompt="a lighthouse", negative_prompt=None, model="tiny-sd", width=128, height=64,
                          steps=2, guidance_scale=5.0, seed=7)
    params = upscaled_x4(made, upscaler)
    assert (params.model, params.width, params.height, params.seed) == ("tiny-sd-upscaler", 512, 256, 7)
    loaded = manager(catalog, models_dir).get("tiny-sd-upscaler")
    assert type(loaded.pipe).__name__ == "StableDiffusionUpscalePipeline"
    steps = []
    source = Image.effect_noise((128, 64), 60).convert("RGB")
    out = run_pipeline(loaded.edit_pipe(), upscaler, [params], init_images=[source],
                       on_step=lambda step, total: steps.append((step, total)) or True)
    assert out[0].size == (512, 256) and steps == [(1, 2), (2, 2)]
    with pytest.raises(InvalidRequest, match="up to 256 px"):
        upscaled_x4(replace(made, width=512), upscaler)


def test_helper_models_are_not_text_to_image_choices(catalog):
    from engine.errors import InvalidRequest
    from engine.generation.params import GenerationParams, check_inputs

    listed = {spec.slug for spec in catalog.all()}
    helpers = {spec.slug for spec in catalog.all(helpers=True)} - listed
    assert helpers == {"sdxl-inpainting", "sd-x4-upscaler", "tiny-sd-inpaint", "tiny-sdxl-inpaint",
                       "tiny-sd-upscaler"}
    with pytest.raises(InvalidRequest, match="upscale model, not a text-to-image one"):
        check_inputs(GenerationParams(prompt="x", model="tiny-sd-upscaler"), catalog.get("tiny-sd-upscaler"))
    with pytest.raises(InvalidRequest, match="not a text-to-image one"):
        catalog.check_alias("my-model", "tiny-sd-inpaint")
