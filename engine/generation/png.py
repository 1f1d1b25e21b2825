"""Fast PNG encoding for generated images.

Pillow's encoder tries five filters on every row and then runs zlib: ~25 ms for a 512² picture on
a small CPU, a tenth of a 4-step tiny-model generation. Here every row gets the "Up" filter (one
vectorised numpy subtraction; it suits photographs and renders) and ISA-L's deflate compresses it
(`isal`, ~1-2 ms, about the size of Pillow at its default level). The output is a plain PNG that any
decoder reads.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from isal import isal_zlib
from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}  # 8 bits per channel
_FILTER_UP = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _text_chunk(key: str, value: str) -> bytes:
    """tEXt for Latin-1 text, iTXt (UTF-8) otherwise, as Pillow's PngInfo does."""
    keyword = key.encode("latin-1", "replace")[:79]
    try:
        return _chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))


def encode(image: Image.Image, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of an 8-bit L, RGB or RGBA image (other modes are converted to RGB/RGBA first)."""
    if image.mode not in _COLOR_TYPES:
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    scanlines = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    scanlines[:, 0] = _FILTER_UP
    scanlines[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[image.mode], 0, 0, 0)
    parts = [_SIGNATURE, _chunk(b"IHDR", header)]
    parts += [_text_chunk(key, value) for key, value in (text or {}).items()]
    parts += [_chunk(b"IDAT", isal_zlib.compress(scanlines.tobytes(), 1)), _chunk(b"IEND", b"")]
    return b"".join(parts)


def decoded(data: bytes) -> Image.Image:
    """PNG (or any image) bytes as a loaded picture."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def data_url(png: bytes) -> str:
    """``data:image/png;base64,…``: how an image that has no hosted link travels in JSON and in the studio."""
    return "data:image/png;base64," + base64.b64encode(png).decode()
