"""Generation settings read back from a picture: ours (the PNG's ``imagestudio`` chunk) or AUTOMATIC1111's
``parameters`` chunk (its "infotext": the prompt, ``Negative prompt: …``, then ``Steps: 20, Sampler: Euler a, …``).
Used when a PNG is dropped on the studio, to offer its settings."""

from __future__ import annotations

import json
import re

from PIL import Image

from engine.generation.samplers import SCHEDULES

# "Key: value" pairs of the last infotext line; a value may be quoted (A1111 quotes those with commas).
_PAIR = re.compile(r'\s*([\w \-/+]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_SCHEDULE_BY_LABEL = {s.label.lower(): s.name for s in SCHEDULES}


def settings_of(image: Image.Image) -> dict | None:
    """The settings an image carries (keys of GenerationParams, plus ``sampler``/``scheduler`` and ``source``:
    "image-studio" or "automatic1111"), or None when it carries none."""
    info = getattr(image, "info", {}) or {}
    if isinstance(info.get("imagestudio"), str):
        return _ours(info["imagestudio"])
    if isinstance(info.get("parameters"), str):
        return parse_infotext(info["parameters"])
    return None


def _ours(text: str) -> dict | None:
    try:
        meta = json.loads(text)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("prompt"), str):
        return None
    keys = ("prompt", "negative_prompt", "model", "width", "height", "steps", "guidance_scale", "seed", "sampler",
            "scheduler")
    return {"source": "image-studio", **{key: meta[key] for key in keys if meta.get(key) is not None}}


def parse_infotext(text: str) -> dict | None:
    """A1111's infotext as settings; None when it is not one (no prompt line)."""
    lines = text.strip().splitlines()
    if not lines:
        return None
    settings: dict = {"source": "automatic1111"}
    pairs: dict[str, str] = {}
    if len(lines) > 1 and _PAIR.match(lines[-1]) and "Steps:" in lines[-1]:
        pairs = {key.strip().lower(): _unquote(value.strip()) for key, value in _PAIR.findall(lines[-1])}
        lines = lines[:-1]
    prompt, negative = [], []
    target = prompt
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative
            line = line.removeprefix("Negative prompt:").strip()
        target.append(line)
    settings["prompt"] = "\n".join(prompt).strip()
    if negative:
        settings["negative_prompt"] = "\n".join(negative).strip()
    if not settings["prompt"]:
        return None
    for key, field, kind in (("steps", "steps", int), ("seed", "seed", int), ("cfg scale", "guidance_scale", float)):
        try:
            settings[field] = kind(pairs[key])
        except (KeyError, ValueError):
            continue
    if match := _SIZE.match(pairs.get("size", "")):
        settings["width"], settings["height"] = int(match[1]), int(match[2])
    if pairs.get("sampler"):
        settings["sampler"] = pairs["sampler"]
    if pairs.get("schedule type"):
        settings["scheduler"] = _SCHEDULE_BY_LABEL.get(pairs["schedule type"].lower(), pairs["schedule type"])
    if pairs.get("model"):
        settings["model"] = pairs["model"]
    return settings


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value
