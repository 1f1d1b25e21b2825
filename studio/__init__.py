"""The NiceGUI studio, mounted on the API's FastAPI app (``ui.run_with``)."""

from __future__ import annotations

from fastapi import FastAPI

from engine.service import ImageEngine


def mount_studio(app: FastAPI, engine: ImageEngine) -> None:
    from nicegui import ui

    from studio import pages

    pages.register(engine)
    ui.run_with(app, mount_path="/", title="Image Studio", dark=None, favicon="🎨",
                storage_secret=engine.settings.resolved_secret_key(), show_welcome_message=False)
