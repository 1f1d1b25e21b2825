"""One module per page; each has ``register(engine)`` that adds its routes."""

from __future__ import annotations

from engine.service import ImageEngine


def register(engine: ImageEngine) -> None:
    from studio.pages import admin, first_run, gallery, generate, keys, login, settings, usage

    for page in (login, first_run, generate, gallery, keys, usage, settings, admin):
        page.register(engine)
