"""A1111 sampler names as diffusers schedulers (engine/generation/samplers.py), and a per-request sampler in the
pipeline call: batched apart, recorded, and never left on the shared pipeline."""

import dataclasses

import numpy as np
import pytest
import torch

from engine.data.db import init_db, make_engine
from engine.errors import InvalidRequest
from engine.generation.catalog import BUILTIN_MODELS, Catalog
from engine.generation.params import GenerationParams, check_inputs, encode_png, read_png_metadata, run_pipeline
from engine.generation.pipelines import PipelineManager, diffusers_class
from engine.generation.samplers import SAMPLERS, SCHEDULES, choose_sampler, find_sampler, with_sampler

SPECS = {spec.slug: spec for spec in BUILTIN_MODELS}


def sd_scheduler():
    """A scheduler configured like an SD 1.5 checkpoint's (the config a sampler is built from)."""
    return diffusers_class("EulerDiscreteScheduler")(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                     steps_offset=1, timestep_spacing="leading")


@pytest.mark.parametrize(("sampler", "schedule", "scheduler_class", "expected"), [
    ("Euler", None, "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    ("Euler a", "automatic", "EulerAncestralDiscreteScheduler", {}),
    ("k_euler_a", None, "EulerAncestralDiscreteScheduler", {}),  # A1111's alias
    ("DPM++ 2M", None, "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),  # its default: Karras
    ("DPM++ 2M", "Uniform", "DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
    ("DPM++ 2M Karras", None, "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),  # the older names
    ("dpm++  2m", "KARRAS", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),  # case, spaces
    ("DPM++ 2M SDE", None, "DPMSolverMultistepScheduler",
     {"algorithm_type": "sde-dpmsolver++", "use_exponential_sigmas": True}),
    ("DPM++ 2M SDE Heun", "beta", "DPMSolverMultistepScheduler",
     {"solver_type": "heun", "use_beta_sigmas": True, "use_karras_sigmas": False}),
    ("DPM2 a", None, "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    ("LMS Karras", None, "LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    ("Heun", "sgm_uniform", "HeunDiscreteScheduler", {"timestep_spacing": "trailing"}),
    ("DDIM", None, "DDIMScheduler", {"beta_schedule": "scaled_linear"}),  # the checkpoint's config carries over
    ("PLMS", None, "PNDMScheduler", {"skip_prk_steps": True}),
    ("UniPC", "exponential", "UniPCMultistepScheduler", {"use_exponential_sigmas": True}),
    ("LCM", None, "LCMScheduler", {}),
])
def test_a1111_names_build_their_diffusers_schedulers(sampler, schedule, scheduler_class, expected):
    built = find_sampler(sampler, schedule).build(sd_scheduler())
    assert type(built).__name__ == scheduler_class
    assert {key: built.config[key] for key in expected} == expected
    built.set_timesteps(8)  # a working scheduler, not just a config
    assert len(built.timesteps) >= 8


def test_every_listed_sampler_builds_with_every_schedule_it_accepts():
    for sampler in SAMPLERS:
        for schedule in SCHEDULES:
            try:
                choice = find_sampler(sampler.name, schedule.name)
            except InvalidRequest as refused:  # only where the class has no such option
                assert refused.field == "scheduler" and not schedule.fits(sampler.scheduler_class)
                continue
            choice.build(sd_scheduler()).set_timesteps(4)


@pytest.mark.parametrize(("sampler", "schedule", "field"), [
    ("Euler b", None, "sampler_name"), ("DPM fast", None, "sampler_name"), ("", "karras", "sampler_name"),
    ("Euler", "polyexponential", "scheduler"), ("Euler", "nope", "scheduler"),
    ("Euler a", "karras", "scheduler"),  # EulerAncestralDiscreteScheduler has no Karras sigmas
])
def test_unknown_names_and_impossible_schedules_are_refused(sampler, schedule, field):
    with pytest.raises(InvalidRequest) as refused:
        find_sampler(sampler, schedule)
    assert refused.value.field == field


def test_which_models_take_the_sampler():
    # SD and SDXL run it; nothing asked: the model's own scheduler.
    assert choose_sampler(SPECS["tiny-sd"], "Euler a", None)[0].sampler.name == "Euler a"
    assert choose_sampler(SPECS["tiny-sdxl"], "UniPC", "karras")[0].schedule.name == "karras"
    assert choose_sampler(SPECS["tiny-sd"], None, None) == (None, ())
    assert choose_sampler(SPECS["tiny-sd"], None, "automatic") == (None, ())
    assert choose_sampler(SPECS["tiny-sd"], None, "karras")[0].sampler.name == "DPM++ 2M"  # A1111's default
    # FLUX keeps its flow-matching scheduler and says so (not for plain Euler, which is what it runs).
    choice, warnings = choose_sampler(SPECS["tiny-flux"], "DPM++ 2M", "karras")
    assert choice is None and "flow-matching" in warnings[0] and "Karras" in warnings[0]
    assert choose_sampler(SPECS["tiny-flux"], "Euler", "automatic") == (None, ())
    # A model distilled for its scheduler keeps it.
    choice, warnings = choose_sampler(SPECS["dreamshaper-8-lcm"], "Euler a", None)
    assert choice is None and "LCMScheduler" in warnings[0]
    assert choose_sampler(SPECS["dreamshaper-8-lcm"], "LCM", None) == (None, ())
    # A typo is refused even where the sampler would not apply.
    with pytest.raises(InvalidRequest):
        choose_sampler(SPECS["tiny-flux"], "Eular", None)


def resolved(**sampler):
    params = check_inputs(GenerationParams(prompt="a lighthouse", width=256, height=256, steps=3, seed=7),
                          SPECS["tiny-sd"])
    return dataclasses.replace(params, **sampler)


def test_the_sampler_keeps_batches_apart_and_is_recorded():
    default, euler_a = resolved(), resolved(sampler="Euler a", scheduler="uniform")
    karras = resolved(sampler="DPM++ 2M", scheduler="karras")
    assert len({default.batch_key(), euler_a.batch_key(), karras.batch_key()}) == 3
    assert euler_a.batch_key() == dataclasses.replace(euler_a, seed=8, prompt="another").batch_key()
    assert "sampler" not in default.as_dict() and "scheduler" not in default.as_dict()
    assert karras.as_dict()["sampler"] == "DPM++ 2M" and karras.as_dict()["scheduler"] == "karras"
    from PIL import Image

    meta = read_png_metadata(encode_png(Image.new("RGB", (8, 8)), karras))
    assert meta["sampler"] == "DPM++ 2M" and meta["scheduler"] == "karras"


@pytest.fixture
def tiny_sd(tmp_path, models_dir):
    db = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    init_db(db)
    return PipelineManager(Catalog(db), models_dir, "cpu", torch.float32, 10**12, allow_downloads=False).get("tiny-sd")


def test_a_call_runs_its_sampler_on_a_copy_of_the_pipeline(tiny_sd):
    pipe, own = tiny_sd.pipe, tiny_sd.pipe.scheduler
    variant = with_sampler(pipe, "DPM++ 2M", "karras")
    assert type(variant.scheduler).__name__ == "DPMSolverMultistepScheduler" and variant.scheduler.config.use_karras_sigmas
    assert variant.unet is pipe.unet and variant.vae is pipe.vae  # the modules are shared, not copied
    assert pipe.scheduler is own and pipe.config["scheduler"][1] == type(own).__name__

    def image(params):
        return np.asarray(run_pipeline(pipe, tiny_sd.spec, [params])[0]).astype(int)

    default = image(resolved())
    # The tiny model's own scheduler is Euler: naming it gives the same picture; DPM++ 2M a different one.
    assert np.array_equal(image(resolved(sampler="Euler", scheduler="uniform")), default)
    karras = image(resolved(sampler="DPM++ 2M", scheduler="karras"))
    assert not np.array_equal(karras, default)
    assert np.array_equal(image(resolved(sampler="DPM++ 2M", scheduler="karras")), karras)  # same seed, same image
    assert pipe.scheduler is own  # the loaded pipeline was never changed
    assert np.array_equal(image(resolved()), default)
