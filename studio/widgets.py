"""Small shared pieces: model choices with their state, formatting, image data URLs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from nicegui import ui

from engine.generation.catalog import ModelSpec
from engine.generation.params import ASPECT_RATIOS
from engine.generation.pipelines import WeightsState
from engine.service import ImageEngine

SIZE_NAMES = {"1:1": "Square", "4:3": "Landscape", "3:2": "Landscape", "16:9": "Wide", "21:9": "Cinema",
              "3:4": "Portrait", "2:3": "Portrait", "9:16": "Tall"}
SIZE_CHOICES = {ratio: f"{SIZE_NAMES[ratio]} · {ratio}" for ratio in ASPECT_RATIOS} | {"custom": "Custom size"}
STATE_LABEL = {WeightsState.LOADED: "loaded", WeightsState.READY: "ready",
               WeightsState.DOWNLOADABLE: "downloadable", WeightsState.UNAVAILABLE: "unavailable"}
STATE_COLOR = {WeightsState.LOADED: "positive", WeightsState.READY: "primary",
               WeightsState.DOWNLOADABLE: "warning", WeightsState.UNAVAILABLE: "grey"}


@dataclass(frozen=True)
class ModelChoice:
    spec: ModelSpec
    state: str
    reason: str | None
    via: str | None = None  # the vendor API that runs it for this server ("BFL API")

    @property
    def usable(self) -> bool:
        return self.state != WeightsState.UNAVAILABLE

    @property
    def label(self) -> str:
        return f"{self.spec.name} · {f'via {self.via}' if self.via else STATE_LABEL[self.state]}"


def model_choices(engine: ImageEngine, *, helpers: bool = False) -> list[ModelChoice]:
    """Every text-to-image model (with ``helpers``, the inpainting checkpoints and upscalers too), usable ones
    first (loaded, ready, downloadable), then the unavailable ones.

    Blocking (the catalog's custom models are in the database; a model's state looks for its files on disk):
    call it off the event loop, ``await off_loop(model_choices, engine)``.
    """
    order = [WeightsState.LOADED, WeightsState.READY, WeightsState.DOWNLOADABLE, WeightsState.UNAVAILABLE]
    choices = [model_choice(engine, spec) for spec in engine.catalog.all(helpers=helpers)]
    return sorted(choices, key=lambda c: order.index(c.state))


def model_choice(engine: ImageEngine, spec: ModelSpec) -> ModelChoice:
    route = engine.route_for(spec.slug)
    if route is not None:  # at its vendor: usable here, under the server's keys and credits
        return ModelChoice(spec, WeightsState.READY, f"runs via {route.label}", via=route.label)
    return ModelChoice(spec, *engine.pipelines.state(spec))


def default_model(engine: ImageEngine, choices: list[ModelChoice], preferred: str | None = None) -> str:
    usable = [c.spec.slug for c in choices if c.usable]
    for slug in (preferred, engine.default_model()):
        if slug in usable:
            return slug
    return usable[0] if usable else choices[0].spec.slug


def state_chip(state: str) -> ui.chip:
    return ui.chip(STATE_LABEL[state], color=STATE_COLOR[state], text_color="white").props("dense square") \
        .classes("text-xs")


def when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    if moment.tzinfo is None:  # SQLite gives naive datetimes back; they are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def size_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def empty_state(icon: str, title: str, text: str = "") -> None:
    with ui.column().classes("w-full items-center text-center py-12 gap-2"):
        ui.icon(icon, size="48px").classes("text-primary opacity-60")
        ui.label(title).classes("text-lg font-semibold")
        if text:
            ui.label(text).classes("studio-muted max-w-md")
