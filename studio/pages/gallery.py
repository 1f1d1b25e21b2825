"""Gallery (/gallery): the user's stored images, filtered and paged, with a detail view."""

from __future__ import annotations

import asyncio
import math

from nicegui import ui
from sqlmodel import col, select

from engine.data.db import session_scope
from engine.errors import NotFound
from engine.generation.params import read_png_metadata
from engine.data.tables import ImageRecord, User
from engine.service import ImageEngine
from studio import auth
from studio.layout import card, frame
from studio.media import image_url, thumb_url
from studio.widgets import empty_state, size_text, when

PAGE_SIZE = 24


def register(engine: ImageEngine) -> None:
    @ui.page("/gallery", title="Gallery · Image Studio")
    def gallery_page():
        user = auth.require_user(engine, "/gallery")
        if user is None:
            return
        with frame(user, "/gallery", "Gallery", "Every image you kept, newest first."):
            GalleryPage(engine, user)


class GalleryPage:
    def __init__(self, engine: ImageEngine, user: User):
        self.engine = engine
        self.guard = auth.Guard(engine, user)
        self.page = 1
        storage = engine.storage_for(user)
        if not storage["store"]:
            reason = ("Storage is off for your plan, so new images are not kept."
                      if not storage["enabled"] else
                      "Your storage quota is full." if storage["quota_full"] else
                      "You turned storage off in Settings, so new images are not kept.")
            with ui.row().classes("w-full items-center gap-2 studio-card px-4 py-3"):
                ui.icon("info", color="warning")
                ui.label(reason).classes("text-sm").mark("storage-note")
        with ui.row().classes("w-full gap-3 items-center"):
            self.search = ui.input(placeholder="Search prompts", on_change=self.reset) \
                .props("outlined dense clearable debounce=300").classes("grow min-w-48").mark("search")
            with self.search.add_slot("prepend"):
                ui.icon("search")
            models = {"": "All models"} | {slug: slug for slug in self._models_used(user.id)}
            self.model = ui.select(models, value="", label="Model", on_change=self.reset) \
                .props("outlined dense options-dense").classes("w-56").mark("model-filter")
            self.total_label = ui.label().classes("studio-muted text-sm").mark("gallery-total")
        self.grid = ui.element("div").classes("grid grid-cols-2 sm:grid-cols-3 lg:grid-cols-4 gap-3 w-full") \
            .mark("gallery-grid")
        self.empty = ui.column().classes("w-full")
        self.pager_box = ui.row().classes("w-full justify-center")
        self.dialogs = ui.element("div")  # the open detail lives here, not inside a tile that a refresh removes
        self.refresh()

    def _models_used(self, user_id: str) -> list[str]:
        with session_scope(self.engine.db) as session:
            return sorted(session.exec(select(ImageRecord.model).distinct().where(
                ImageRecord.user_id == user_id, col(ImageRecord.file_path).is_not(None))).all())

    def reset(self, _=None) -> None:
        self.page = 1
        self.refresh()

    def refresh(self) -> None:
        rows, total = self.engine.gallery.list(self.guard.user_id, query=(self.search.value or "").strip() or None,
                                               model=self.model.value or None, limit=PAGE_SIZE,
                                               offset=(self.page - 1) * PAGE_SIZE)
        self.total_label.text = f"{total} image{'s' if total != 1 else ''}"
        self.grid.clear()
        with self.grid:
            for record in rows:
                self._tile(record)
        self.empty.clear()
        if not rows:
            filtered = self.search.value or self.model.value
            with self.empty, card():
                empty_state("photo_library", "No images match" if filtered else "No images yet",
                            "Try another search." if filtered else "Images you generate are kept here.")
        self.pager_box.clear()
        pages = math.ceil(total / PAGE_SIZE)
        if pages > 1:
            with self.pager_box:
                ui.pagination(1, pages, direction_links=True, value=self.page, on_change=self._go) \
                    .props("max-pages=7 boundary-numbers").mark("pager")

    def _go(self, event) -> None:
        if event.value != self.page:
            self.page = event.value
            self.refresh()

    def _tile(self, record: ImageRecord) -> None:
        with ui.element("div").classes("studio-card studio-thumb overflow-hidden cursor-pointer") \
                .on("click", lambda r=record: self.open_detail(r.id)) \
                .mark("gallery-item").props("data-testid=gallery-item"):
            ui.image(thumb_url(record.id)).props("ratio=1 fit=cover loading=lazy").classes("w-full") \
                .mark(f"thumb-{record.id}")
            with ui.column().classes("p-3 gap-0"):
                ui.label(record.prompt).classes("text-sm line-clamp-1")
                ui.label(f"{record.model} · {record.width}×{record.height}").classes("text-xs studio-muted")

    # -- detail ----------------------------------------------------------------------------------
    async def open_detail(self, image_id: str) -> None:
        if self.guard.user() is None:
            return
        try:
            record = self.engine.gallery.get(image_id, self.guard.user_id)
            png = await asyncio.to_thread(self.engine.gallery.read, record)
        except NotFound as exc:
            ui.notify(exc.message, type="warning")
            self.refresh()
            return
        metadata = read_png_metadata(png)
        self.dialogs.clear()
        with self.dialogs, ui.dialog() as dialog, \
                ui.card().classes("w-full max-w-5xl p-0 gap-0 overflow-hidden") \
                .mark("detail").props("data-testid=detail"):
            with ui.element("div").classes("grid grid-cols-1 md:grid-cols-[3fr_2fr] w-full"):
                with ui.element("div").classes("studio-checker flex items-center justify-center"):
                    ui.image(image_url(record.id)).props("fit=contain").classes("w-full max-h-[80vh]") \
                        .mark("detail-image").props("data-testid=detail-image")
                with ui.column().classes("p-5 gap-3 min-w-0"):
                    with ui.row().classes("w-full items-center no-wrap"):
                        ui.label("Image details").classes("text-lg font-semibold grow")
                        ui.button(icon="close", on_click=dialog.close).props("flat round dense")
                    self._parameters(record, png)
                    with ui.expansion("PNG metadata", icon="data_object").classes("w-full") \
                            .props("dense").mark("png-metadata"):
                        for key, value in sorted(metadata.items()):
                            with ui.row().classes("w-full gap-2 text-xs no-wrap"):
                                ui.label(key).classes("studio-muted w-28 shrink-0")
                                ui.label("—" if value is None else str(value)).classes("break-all")
                    with ui.row().classes("gap-2 pt-2"):
                        ui.button("Download", icon="download", on_click=lambda: ui.download.content(
                            png, f"{record.id}.png", "image/png")).props("unelevated no-caps").mark("download")
                        if record.kind != "remove_background":  # a cut-out has no generation settings
                            ui.button("Reuse", icon="replay",
                                      on_click=lambda: ui.navigate.to(f"/?reuse={record.id}")) \
                                .props("outline no-caps").mark("reuse")
                        ui.button("Delete", icon="delete", on_click=lambda: self.confirm_delete(record, dialog)) \
                            .props("flat no-caps color=negative").mark("delete")
        dialog.open()

    @staticmethod
    def _parameters(record: ImageRecord, png: bytes) -> None:
        rows = [("Prompt", record.prompt), ("Negative prompt", record.negative_prompt or "—"),
                ("Model", record.model), ("Size", f"{record.width} × {record.height}"), ("Steps", record.steps),
                ("Guidance", record.guidance_scale), ("Seed", record.seed), ("Kind", record.kind.replace("_", " ")),
                ("Created", when(record.created_at)), ("Took", f"{record.duration_ms} ms"),
                ("File", size_text(len(png))), ("Id", record.id)]
        with ui.column().classes("w-full gap-1").mark("parameters"):
            for name, value in rows:
                with ui.row().classes("w-full gap-2 no-wrap text-sm"):
                    ui.label(name).classes("studio-muted w-28 shrink-0")
                    ui.label(str(value)).classes("break-words min-w-0")

    def confirm_delete(self, record: ImageRecord, detail: ui.dialog) -> None:
        with self.dialogs, ui.dialog() as confirm, ui.card().classes("p-5 gap-3"):
            ui.label("Delete this image?").classes("text-lg font-semibold")
            ui.label("It is removed from your gallery and from the disk. This can't be undone.") \
                .classes("studio-muted text-sm")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=confirm.close).props("flat no-caps")
                ui.button("Delete", on_click=lambda: self.delete(record.id, confirm, detail)) \
                    .props("unelevated no-caps color=negative").mark("confirm-delete")
        confirm.open()

    def delete(self, image_id: str, *dialogs: ui.dialog) -> None:
        for dialog in dialogs:
            dialog.close()
        if self.guard.user() is None:
            return
        try:
            self.engine.gallery.delete(image_id, self.guard.user_id)
        except NotFound:
            pass  # already gone: the refresh shows it
        ui.notify("Image deleted.", type="positive")
        self.refresh()
