"""Gallery (/gallery): the user's stored images, filtered and paged, with a detail view."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nicegui import ui

from engine.data.tables import ImageRecord, User
from engine.errors import NotFound
from engine.generation.params import read_png_metadata
from engine.service import ImageEngine
from studio import auth
from studio.layout import card, frame
from studio.media import image_url, thumb_url
from studio.offload import off_loop
from studio.widgets import empty_state, size_text, when

PAGE_SIZE = 24


def register(engine: ImageEngine) -> None:
    @ui.page("/gallery", title="Gallery · Image Studio")
    async def gallery_page():
        user = await auth.require_user(engine, "/gallery")
        if user is None:
            return
        data = await off_loop(gallery_data, engine, user)
        with frame(user, "/gallery", "Gallery", "Every image you kept, newest first."):
            GalleryPage(engine, user, data)


@dataclass
class GalleryData:
    storage: dict  # engine.storage_for(user)
    models_used: list[str]
    rows: list[ImageRecord]  # the first page, newest first
    total: int


def gallery_data(engine: ImageEngine, user: User) -> GalleryData:
    """What the gallery shows when it opens (blocking: the database; call it off the loop)."""
    rows, total = engine.gallery.list(user.id, limit=PAGE_SIZE)
    return GalleryData(storage=engine.storage_for(user), models_used=engine.gallery.models_used(user.id),
                       rows=rows, total=total)


def detail_of(engine: ImageEngine, image_id: str, user_id: str) -> tuple[ImageRecord, bytes, dict]:
    """The user's stored image, its PNG and the PNG's metadata (blocking: the database, then the file)."""
    record = engine.gallery.get(image_id, user_id)
    png = engine.gallery.read(record)
    return record, png, read_png_metadata(png)


class GalleryPage:
    """Built on the loop from what the page function read off it; ``await refresh()`` reads and draws again."""

    def __init__(self, engine: ImageEngine, user: User, data: GalleryData):
        self.engine = engine
        self.guard = auth.Guard(engine, user)
        self.page = 1
        self._shown = 0  # the newest refresh; an older one that answers late (a search typed on) draws nothing
        storage = data.storage
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
            models = {"": "All models"} | {slug: slug for slug in data.models_used}
            self.model = ui.select(models, value="", label="Model", on_change=self.reset) \
                .props("outlined dense options-dense").classes("w-56").mark("model-filter")
            self.total_label = ui.label().classes("studio-muted text-sm").mark("gallery-total")
        self.grid = ui.element("div").classes("grid grid-cols-2 sm:grid-cols-3 lg:grid-cols-4 gap-3 w-full") \
            .mark("gallery-grid")
        self.empty = ui.column().classes("w-full")
        self.pager_box = ui.row().classes("w-full justify-center")
        self.dialogs = ui.element("div")  # the open detail lives here, not inside a tile that a refresh removes
        self._draw(data.rows, data.total)

    async def reset(self, _=None) -> None:
        self.page = 1
        await self.refresh()

    async def refresh(self) -> None:
        self._shown += 1
        mine = self._shown
        rows, total = await off_loop(self.engine.gallery.list, self.guard.user_id,
                                     query=(self.search.value or "").strip() or None,
                                     model=self.model.value or None, limit=PAGE_SIZE,
                                     offset=(self.page - 1) * PAGE_SIZE)
        if mine != self._shown or self.grid.is_deleted:
            return
        self._draw(rows, total)

    def _draw(self, rows: list[ImageRecord], total: int) -> None:
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

    async def _go(self, event) -> None:
        if event.value != self.page:
            self.page = event.value
            await self.refresh()

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
        if await self.guard.user() is None:
            return
        try:
            record, png, metadata = await off_loop(detail_of, self.engine, image_id, self.guard.user_id)
        except NotFound as exc:
            ui.notify(exc.message, type="warning")
            await self.refresh()
            return
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
                        ui.button(icon="close", on_click=dialog.close).props('flat round dense aria-label="Close"')
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

    async def delete(self, image_id: str, *dialogs: ui.dialog) -> None:
        for dialog in dialogs:
            dialog.close()
        if await self.guard.user() is None:
            return
        try:  # the record, then its file
            await off_loop(self.engine.gallery.delete, image_id, self.guard.user_id)
        except NotFound:
            pass  # already gone: the refresh shows it
        ui.notify("Image deleted.", type="positive")
        await self.refresh()
