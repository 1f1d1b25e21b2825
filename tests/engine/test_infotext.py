"""Settings read back from a dropped PNG: ours, or AUTOMATIC1111's infotext."""

import io

from PIL import Image, PngImagePlugin

from engine.generation.infotext import parse_infotext, settings_of

A1111 = """a castle on a hill, golden hour, "epic"
Negative prompt: blurry, lowres
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, Size: 768x512, Model hash: abc, Model: dreamshaper_8, Lora hashes: "x: 1, y: 2", Version: v1.10.1"""


def png_with(**text) -> Image.Image:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    return image


def test_an_a1111_infotext_gives_its_settings():
    assert parse_infotext(A1111) == {
        "source": "automatic1111", "prompt": 'a castle on a hill, golden hour, "epic"',
        "negative_prompt": "blurry, lowres", "steps": 28, "seed": 1234567, "guidance_scale": 6.5,
        "width": 768, "height": 512, "sampler": "DPM++ 2M", "scheduler": "karras", "model": "dreamshaper_8"}
    assert settings_of(png_with(parameters=A1111))["seed"] == 1234567


def test_a_prompt_only_infotext_and_ours_and_none():
    assert parse_infotext("just a prompt") == {"source": "automatic1111", "prompt": "just a prompt"}
    ours = settings_of(png_with(imagestudio='{"prompt": "a fox", "seed": 5, "model": "tiny-sd", "steps": 2}'))
    assert ours == {"source": "image-studio", "prompt": "a fox", "seed": 5, "model": "tiny-sd", "steps": 2}
    assert settings_of(png_with()) is None
    assert settings_of(png_with(imagestudio="not json")) is None
    assert parse_infotext("\n\n") is None
