"""Studio pages. For now: one page that generates an image and shows it."""

from __future__ import annotations

import asyncio
import base64

from nicegui import ui
from sqlmodel import select

from engine.accounts import create_user
from engine.db import session_scope
from engine.errors import EngineError
from engine.generation import GenerationParams
from engine.models import User
from engine.service import ImageEngine

STUDIO_EMAIL = "studio@localhost"


def studio_user(engine: ImageEngine) -> User:
    """The local account the studio generates as until sign-in exists."""
    with session_scope(engine.db) as session:
        user = session.exec(select(User).where(User.email == STUDIO_EMAIL)).first()
        return user or create_user(session, STUDIO_EMAIL, name="Studio")


def register(engine: ImageEngine) -> None:
    @ui.page("/")
    async def generate_page():
        ui.label("Image Studio").classes("text-2xl font-bold")
        models = {s.slug: s.name for s in engine.catalog.all() if s.open_weights}
        default = engine.settings.default_model if engine.settings.default_model in models else "tiny-sd"
        with ui.card().classes("w-full max-w-3xl"):
            prompt = ui.textarea("Prompt", placeholder="a lighthouse at dusk, oil painting").classes("w-full")
            prompt.props("data-testid=prompt")
            with ui.row().classes("w-full items-end"):
                model = ui.select(models, value=default, label="Model").classes("min-w-64")
                size = ui.select({256: "256 px", 512: "512 px", 768: "768 px", 1024: "1024 px"}, value=512,
                                 label="Size")
                button = ui.button("Generate").props("data-testid=generate")
            progress = ui.linear_progress(value=0, show_value=False).classes("w-full")
            progress.visible = False
            status = ui.label("")
        result = ui.column().classes("w-full max-w-3xl")

        async def generate() -> None:
            if not (prompt.value or "").strip():
                ui.notify("Write a prompt first", type="warning")
                return
            button.disable()
            progress.visible, progress.value = True, 0
            status.text = "Queued…"
            try:
                params = GenerationParams(prompt=prompt.value, model=model.value, width=size.value, height=size.value)
                task = engine.submit_generation(studio_user(engine), params)
                future = asyncio.wrap_future(task.future)
                while not future.done():
                    if task.total:
                        progress.value = task.step / task.total
                        status.text = f"Step {task.step} of {task.total}"
                    await asyncio.sleep(0.1)
                generated = await future
            except EngineError as exc:
                status.text = exc.message
                ui.notify(exc.message, type="negative")
                return
            except ValueError as exc:
                status.text = str(exc)
                return
            finally:
                button.enable()
                progress.visible = False
            status.text = f"Done in {generated.duration_ms} ms · seed {generated.params.seed}"
            result.clear()
            with result:
                ui.image("data:image/png;base64," + base64.b64encode(generated.png).decode()).classes(
                    "w-full").props("data-testid=result")

        button.on_click(generate)
