"""First run, after the admin account (/setup/model): this machine, the catalog model that runs well on it, and its
pull with a real progress bar (bytes, rate, time left), cancellable and resumable; on success it is the default.
Skippable: the tiny offline models work at once."""

from __future__ import annotations

import threading

from nicegui import ui

from engine.errors import EngineError, ModelNotFound, ModelUnavailable, PullCancelled
from engine.generation.hardware import Machine, Recommendation, detect, recommend, size_text
from engine.service import ImageEngine
from studio import auth
from studio.layout import centered_page
from studio.offload import off_loop

PATH = "/setup/model"


def default_is_ready(engine: ImageEngine) -> bool:
    """Whether a request naming no model runs now (blocking: looks at the disk)."""
    try:
        engine.resolve_model(None)
    except (ModelUnavailable, ModelNotFound):
        return False
    return True


def look(engine: ImageEngine) -> tuple[Machine, Recommendation, bool]:
    """(this machine, the recommendation, whether its weights are already here); blocking."""
    machine = detect(engine.pipelines.models_dir)
    choice = recommend(machine, engine.catalog)
    return machine, choice, bool(choice.spec and engine.pipelines.weights_here(choice.spec))


def register(engine: ImageEngine) -> None:
    @ui.page(PATH, title="Pick a model · Image Studio")
    async def model_step():
        user = await auth.require_admin(engine, PATH)
        if user is None:
            return
        guard = auth.Guard(engine, user, admin=True)
        machine, choice, here = await off_loop(look, engine)
        cancel = threading.Event()
        ui.context.client.on_disconnect(cancel.set)  # the tab closed: stop there (the next pull resumes)
        latest: dict = {}  # the download thread's newest PullProgress, shown by the timer

        def show_progress() -> None:
            event = latest.get("event")
            if event is not None:
                bar.value = event.fraction
                status.text = event.text()

        async def pull() -> None:
            if await guard.user() is None:
                return
            slug = choice.spec.slug
            cancel.clear()
            latest.clear()
            error.visible = False
            pull_button.disable()
            cancel_button.visible = True
            bar.visible = status.visible = True
            status.text = "Starting…"
            timer.activate()
            try:
                await off_loop(engine.pull_model, slug, events=lambda e: latest.update(event=e), cancel=cancel,
                               make_default=True)
            except PullCancelled:
                status.text = "Cancelled. What came down stays: Pull again to resume."
            except EngineError as exc:
                error.text, error.visible = exc.message, True
            except OSError as exc:  # the disk refused a write
                error.text, error.visible = f"Writing to the models folder failed ({exc.strerror}).", True
            else:
                timer.deactivate()
                show_progress()
                ui.notify(f"{choice.spec.name} is ready and is now the default model.", type="positive")
                ui.navigate.to("/")
                return
            finally:
                cancel_button.visible = False
            timer.deactivate()
            show_progress()
            pull_button.enable()

        async def use_it() -> None:
            if await guard.user() is None:
                return
            await off_loop(engine.set_default_model, choice.spec.slug)
            ui.navigate.to("/")

        with centered_page():
            with ui.column().classes("gap-0"):
                ui.label("A model for this machine").classes("text-xl font-semibold")
                ui.label(machine.summary()).classes("studio-muted text-sm").mark("machine")
            if choice.spec is None:
                ui.label(choice.reason).classes("text-sm").mark("recommendation")
            else:
                with ui.column().classes("gap-1"):
                    ui.label(choice.spec.name).classes("font-medium").mark("recommended-model")
                    ui.label(f"{choice.spec.slug} · {size_text(choice.download_bytes)} download"
                             + (" · already here" if here else "")).classes("text-xs studio-muted") \
                        .mark("download-size")
                    ui.label(choice.reason).classes("text-sm").mark("recommendation")
            bar = ui.linear_progress(value=0, show_value=False).props("rounded size=8px").mark("pull-progress")
            status = ui.label().classes("text-sm studio-muted").mark("pull-status")
            bar.visible = status.visible = False
            error = ui.label().classes("text-negative text-sm").mark("pull-error")
            error.visible = False
            timer = ui.timer(0.25, show_progress, active=False)
            with ui.row().classes("w-full gap-2"):
                pull_button = ui.button("Use it" if here else "Pull", icon="check" if here else "download",
                                        on_click=use_it if here else pull).props("unelevated no-caps") \
                    .mark("pull-model")
                pull_button.visible = choice.spec is not None
                cancel_button = ui.button("Cancel", on_click=cancel.set).props("flat no-caps").mark("cancel-pull")
                cancel_button.visible = False
                ui.button("Skip", on_click=lambda: ui.navigate.to("/")).props("flat no-caps").mark("skip")
            ui.label("The tiny offline models work right away for trying the studio; Admin → Models pulls any "
                     "other model later.").classes("text-xs studio-muted")
