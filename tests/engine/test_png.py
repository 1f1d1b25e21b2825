import io

import numpy as np
import pytest
from PIL import Image

from engine.generation import png


def random_pixels(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize(("mode", "shape"), [("L", (31, 17)), ("RGB", (64, 48, 3)), ("RGBA", (5, 9, 4))])
def test_pixels_survive_a_round_trip_through_pillow(mode, shape):
    pixels = random_pixels(*shape)
    decoded = Image.open(io.BytesIO(png.encode(Image.fromarray(pixels, mode))))
    decoded.load()
    assert decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), pixels)


def test_text_chunks_are_read_back_latin1_and_utf8():
    data = png.encode(Image.new("RGB", (4, 4), "red"), {"prompt": "café at dusk", "negative": "雨, blur"})
    assert Image.open(io.BytesIO(data)).text == {"prompt": "café at dusk", "negative": "雨, blur"}


def test_other_modes_are_converted_keeping_transparency():
    palette = Image.new("P", (8, 8), 1)
    palette.info["transparency"] = 1
    assert Image.open(io.BytesIO(png.encode(palette))).mode == "RGBA"
    assert Image.open(io.BytesIO(png.encode(Image.new("CMYK", (8, 8))))).mode == "RGB"


def test_smooth_pictures_compress():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    rgb = np.stack([ramp, ramp.T, ramp // 2], axis=-1)
    assert len(png.encode(Image.fromarray(rgb))) < rgb.nbytes / 20
