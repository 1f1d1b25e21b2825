import pytest
from PIL import Image
from pydantic import ValidationError

from engine.errors import InvalidRequest, ModelUnavailable
from engine.generation.catalog import BUILTIN_MODELS
from engine.generation.params import GenerationParams, check_inputs, encode_png, read_png_metadata

SPECS = {spec.slug: spec for spec in BUILTIN_MODELS}


def test_defaults_come_from_the_model():
    resolved = check_inputs(GenerationParams(prompt=" a cat "), SPECS["flux-schnell"])
    assert resolved.prompt == "a cat" and resolved.steps == 4 and resolved.guidance_scale == 0.0
    assert (resolved.width, resolved.height) == (512, 512) and 0 <= resolved.seed < 2**32


def test_sizes_are_rounded_to_what_the_model_needs():
    flux = check_inputs(GenerationParams(prompt="x", width=300, height=1000), SPECS["flux-schnell"])
    assert (flux.width, flux.height) == (304, 1008)
    sdxl = check_inputs(GenerationParams(prompt="x", width=256, height=777), SPECS["stable-diffusion"])
    assert (sdxl.width, sdxl.height) == (512, 776)  # SDXL's floor is 512 px
    lcm = check_inputs(GenerationParams(prompt="x", width=1024, height=1024), SPECS["dreamshaper-8-lcm"])
    assert (lcm.width, lcm.height) == (768, 768)


def test_negative_prompts_use_true_cfg_on_flux_and_warn_where_a_model_has_none():
    params = GenerationParams(prompt="x", negative_prompt="blurry")
    flux = check_inputs(params, SPECS["flux-schnell"])
    assert flux.negative_prompt == "blurry" and flux.true_cfg_scale == 4.0 and flux.warnings == ()
    sd = check_inputs(params, SPECS["tiny-sd"])
    assert sd.negative_prompt == "blurry" and sd.true_cfg_scale is None and sd.warnings == ()
    klein = check_inputs(params, SPECS["flux-2-klein-4b"])
    assert klein.negative_prompt is None
    assert klein.warnings == ("negative_prompt was not used: FLUX.2 [klein] 4B has no negative conditioning",)
    assert check_inputs(params.model_copy(update={"true_cfg_scale": 7.0}), SPECS["flux-schnell"]).true_cfg_scale == 7
    # Without a negative prompt FLUX runs as before: no true CFG, so no doubled cost.
    assert check_inputs(GenerationParams(prompt="x"), SPECS["flux-schnell"]).true_cfg_scale is None


def test_what_a_model_takes_differently_is_told_not_dropped():
    asked = GenerationParams(prompt="x", width=777, height=333, guidance_scale=3.0, true_cfg_scale=2.0)
    warnings = check_inputs(asked, SPECS["flux-schnell"]).warnings
    assert warnings == (
        "true_cfg_scale was not used: it applies to FLUX.1 models with a negative_prompt",
        "guidance_scale was not used: FLUX.1 [schnell] is guidance-distilled",
        "width 777 was rounded to 784: FLUX.1 [schnell] takes multiples of 16 from 256 to 1024",
        "height 333 was rounded to 336: FLUX.1 [schnell] takes multiples of 16 from 256 to 1024",
    )
    assert check_inputs(GenerationParams(prompt="x", width=512, height=512), SPECS["tiny-sd"]).warnings == ()


def test_num_inference_steps_is_the_field_and_steps_its_alias():
    assert check_inputs(GenerationParams(prompt="x", num_inference_steps=7), SPECS["tiny-sd"]).steps == 7
    assert check_inputs(GenerationParams(prompt="x", steps=6), SPECS["tiny-sd"]).steps == 6
    assert check_inputs(GenerationParams(prompt="x", steps=5, num_inference_steps=5), SPECS["tiny-sd"]).steps == 5
    with pytest.raises(ValidationError) as info:
        GenerationParams(prompt="x", num_inference_steps=4, steps=6)
    message = str(info.value)
    assert "num_inference_steps (4) and steps (6) differ" in message
    with pytest.raises(ValidationError):
        GenerationParams(prompt="x", num_inference_steps=51)


@pytest.mark.parametrize("field,value", [("prompt", ""), ("prompt", "x" * 2001), ("negative_prompt", "n" * 1001),
                                         ("width", 255), ("height", 1025), ("steps", 0), ("steps", 51),
                                         ("num_inference_steps", 0), ("num_inference_steps", 51),
                                         ("seed", -1), ("seed", 2**32), ("guidance_scale", -1)])
def test_limits_are_enforced(field, value):
    data = {"prompt": "ok", field: value}
    with pytest.raises(ValidationError) as info:
        GenerationParams(**data)
    assert info.value.errors()[0]["loc"] == (field,)


def test_blank_prompt_and_proprietary_model_are_refused():
    with pytest.raises(InvalidRequest):
        check_inputs(GenerationParams.model_construct(prompt="   ", width=512, height=512), SPECS["tiny-sd"])
    with pytest.raises(ModelUnavailable, match="no open weights"):
        check_inputs(GenerationParams(prompt="x"), SPECS["lucid-origin"])


def test_png_carries_the_parameters():
    resolved = check_inputs(GenerationParams(prompt="a cat", negative_prompt="dog", seed=7), SPECS["tiny-sd"])
    png = encode_png(Image.new("RGB", (8, 8)), resolved)
    meta = read_png_metadata(png)
    assert meta == resolved.as_dict()
    with Image.open(__import__("io").BytesIO(png)) as image:
        assert image.text["prompt"] == "a cat" and image.text["seed"] == "7" and image.text["model"] == "tiny-sd"


def test_aspect_ratios_keep_the_native_area_within_limits():
    from engine.generation.params import size_for_aspect

    assert size_for_aspect(SPECS["flux-schnell"], "1:1") == (1024, 1024)
    assert size_for_aspect(SPECS["flux-schnell"], "16:9") == (1024, 576)  # long side capped at the maximum
    assert size_for_aspect(SPECS["stable-diffusion"], "3:4") == (768, 1024)
    assert size_for_aspect(SPECS["dreamshaper-8-lcm"], "2:3") == (416, 624)
    with pytest.raises(InvalidRequest):
        size_for_aspect(SPECS["flux-schnell"], "7:5")


def test_an_upscale_doubles_within_the_models_limits_and_refuses_what_cannot_grow():
    from engine.generation.params import upscaled

    spec = SPECS["tiny-flux"]  # multiples of 16, up to 1024
    small = check_inputs(GenerationParams(prompt="x", model="tiny-flux", width=400, height=304, seed=9), spec)
    bigger = upscaled(small, spec, 2)
    assert (bigger.width, bigger.height, bigger.seed, bigger.prompt) == (800, 608, 9, "x")
    capped = upscaled(check_inputs(GenerationParams(prompt="x", width=768, height=512), spec), spec, 2)
    assert (capped.width, capped.height) == (1024, 688)  # the long side at the model's maximum, the shape kept
    with pytest.raises(InvalidRequest, match="already the largest"):
        upscaled(check_inputs(GenerationParams(prompt="x", width=1024, height=1024), spec), spec, 2)
    with pytest.raises(InvalidRequest, match="factor"):
        upscaled(small, spec, 1)
