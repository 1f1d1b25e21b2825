"""Gallery (/gallery): the user's stored images, filtered (search, model, favourites, board) and paged; a detail
view with previous/next (arrow keys); stars and boards; select several to star, board, zip or delete."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nicegui import background_tasks, ui

from engine.data.tables import ImageRecord, User
from engine.errors import EngineError, NotFound
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
    boards: list[str]
    rows: list[ImageRecord]  # the first page, newest first
    total: int


def gallery_data(engine: ImageEngine, user: User) -> GalleryData:
    """What the gallery shows when it opens (blocking: the database; call it off the loop)."""
    rows, total = engine.gallery.list(user.id, limit=PAGE_SIZE)
    return GalleryData(storage=engine.storage_for(user), models_used=engine.gallery.models_used(user.id),
                       boards=engine.gallery.boards(user.id), rows=rows, total=total)


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
        self.rows: list[ImageRecord] = []  # the page shown: the detail's previous and next
        self.selected: set[str] = set()
        self.selecting = False
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
            self.board = ui.select(self._board_options(data.boards), value="", label="Board", on_change=self.reset) \
                .props("outlined dense options-dense").classes("w-44").mark("board-filter")
            self.favorites = ui.checkbox("Favourites", on_change=self.reset).mark("favorites-filter")
            self.total_label = ui.label().classes("studio-muted text-sm").mark("gallery-total")
            self.select_button = ui.button("Select", icon="checklist", on_click=self.toggle_selecting) \
                .props("flat no-caps").mark("select-mode")
        with ui.row().classes("w-full items-center gap-2 studio-card px-4 py-2").mark("bulk-bar") as self.bulk_bar:
            self.selected_label = ui.label().classes("text-sm font-medium grow").mark("selected-count")
            ui.button("Star", icon="star", on_click=lambda: self.bulk_favorite(True)).props("flat no-caps") \
                .mark("bulk-star")
            ui.button("Board…", icon="dashboard_customize", on_click=self.bulk_board_dialog).props("flat no-caps") \
                .mark("bulk-board")
            ui.button("Download zip", icon="folder_zip", on_click=self.bulk_zip).props("flat no-caps") \
                .mark("bulk-zip")
            ui.button("Delete", icon="delete", on_click=self.bulk_delete_confirm) \
                .props("flat no-caps color=negative").mark("bulk-delete")
        self.bulk_bar.visible = False
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
                                     offset=(self.page - 1) * PAGE_SIZE, favorites=bool(self.favorites.value),
                                     board=self.board.value or None)
        if mine != self._shown or self.grid.is_deleted:
            return
        self._draw(rows, total)

    def _draw(self, rows: list[ImageRecord], total: int) -> None:
        self.rows = rows
        self.total_label.text = f"{total} image{'s' if total != 1 else ''}"
        self.grid.clear()
        with self.grid:
            for record in rows:
                self._tile(record)
        self.empty.clear()
        if not rows:
            filtered = self.search.value or self.model.value or self.board.value or self.favorites.value
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
        chosen = record.id in self.selected
        with ui.element("div").classes("studio-card studio-thumb overflow-hidden cursor-pointer relative"
                                       + (" ring-4 ring-primary" if chosen else "")) \
                .on("click", lambda r=record: self.toggle_selected(r.id) if self.selecting else self.open_detail(r.id)) \
                .mark("gallery-item", f"item-{record.id}").props("data-testid=gallery-item"):
            ui.image(thumb_url(record.id)).props("ratio=1 fit=cover loading=lazy").classes("w-full") \
                .mark(f"thumb-{record.id}")
            if self.selecting:
                ui.icon("check_circle" if chosen else "radio_button_unchecked", color="primary", size="28px") \
                    .classes("absolute top-2 left-2 bg-white/80 rounded-full").mark(f"select-{record.id}")
            star = ui.button(icon="star" if record.favorite else "star_border",
                             on_click=lambda r=record: self.star(r.id, not r.favorite)) \
                .props(f'flat round dense color={"amber" if record.favorite else "white"} '
                       f'aria-label="{"Unstar" if record.favorite else "Star"}"') \
                .classes("absolute top-2 right-2 bg-black/30").mark(f"star-{record.id}")
            star.on("click.stop", lambda: None)  # the star, not the tile's detail
            with ui.column().classes("p-3 gap-0"):
                ui.label(record.prompt).classes("text-sm line-clamp-1")
                ui.label(f"{record.model} · {record.width}×{record.height}").classes("text-xs studio-muted")

    @staticmethod
    def _board_options(boards: list[str]) -> dict[str, str]:
        return {"": "All boards"} | {board: board for board in boards}

    async def _reload_boards(self) -> None:
        boards = await off_loop(self.engine.gallery.boards, self.guard.user_id)
        if not self.board.is_deleted:
            self.board.set_options(self._board_options(boards), value=self.board.value
                                   if self.board.value in boards else "")

    async def star(self, image_id: str, favorite: bool) -> None:
        if await self.guard.user() is None:
            return
        await off_loop(self.engine.gallery.set_favorite, [image_id], self.guard.user_id, favorite)
        await self.refresh()

    # -- several at once ---------------------------------------------------------------------------
    def toggle_selecting(self) -> None:
        self.selecting = not self.selecting
        self.selected.clear()
        self.select_button.text = "Done" if self.selecting else "Select"
        self._draw_selection()
        self._draw(self.rows, self._total())

    def _total(self) -> int:
        return int((self.total_label.text or "0").split()[0])

    def toggle_selected(self, image_id: str) -> None:
        self.selected.symmetric_difference_update({image_id})
        self._draw_selection()
        self._draw(self.rows, self._total())

    def _draw_selection(self) -> None:
        self.bulk_bar.visible = self.selecting
        count = len(self.selected)
        self.selected_label.text = f"{count} selected" if count else "Click images to select them"

    async def bulk_favorite(self, favorite: bool) -> None:
        if await self.guard.user() is None or not self.selected:
            return
        done = await off_loop(self.engine.gallery.set_favorite, list(self.selected), self.guard.user_id, favorite)
        ui.notify(f"Starred {done} image{'s' if done != 1 else ''}.", type="positive")
        await self.refresh()

    def bulk_board_dialog(self) -> None:
        if not self.selected:
            return
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("p-5 gap-3 w-full max-w-sm"):
            ui.label(f"Put {len(self.selected)} on a board").classes("text-lg font-semibold")
            name = ui.input("Board", placeholder="e.g. Client A · logos",
                            autocomplete=[b for b in self.board.options if b]) \
                .props("outlined dense").classes("w-full").mark("board-name")

            async def save() -> None:
                dialog.close()
                try:
                    done = await off_loop(self.engine.gallery.set_board, list(self.selected), self.guard.user_id,
                                          name.value)
                except EngineError as exc:
                    ui.notify(exc.message, type="negative")
                    return
                ui.notify(f"{done} image{'s' if done != 1 else ''} on “{name.value.strip()}”." if name.value.strip()
                          else f"{done} taken off their board.", type="positive")
                await self._reload_boards()
                await self.refresh()

            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Save", on_click=save).props("unelevated no-caps").mark("save-board")
        dialog.open()

    async def bulk_zip(self) -> None:
        if await self.guard.user() is None or not self.selected:
            return
        data = await off_loop(self.engine.gallery.zip_of, list(self.selected), self.guard.user_id)
        ui.download.content(data, f"image-studio-{len(self.selected)}-images.zip", "application/zip")

    def bulk_delete_confirm(self) -> None:
        if not self.selected:
            return
        with self.dialogs, ui.dialog() as confirm, ui.card().classes("p-5 gap-3"):
            ui.label(f"Delete {len(self.selected)} images?").classes("text-lg font-semibold")
            ui.label("They are removed from your gallery and from the disk. This can't be undone.") \
                .classes("studio-muted text-sm")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=confirm.close).props("flat no-caps")
                ui.button("Delete", on_click=lambda: self.bulk_delete(confirm)) \
                    .props("unelevated no-caps color=negative").mark("confirm-bulk-delete")
        confirm.open()

    async def bulk_delete(self, confirm: ui.dialog) -> None:
        confirm.close()
        if await self.guard.user() is None:
            return
        ids, deleted = list(self.selected), 0
        for image_id in ids:
            try:
                await off_loop(self.engine.gallery.delete, image_id, self.guard.user_id)
                deleted += 1
            except NotFound:
                continue  # already gone
        self.selected.clear()
        self._draw_selection()
        ui.notify(f"Deleted {deleted} image{'s' if deleted != 1 else ''}.", type="positive")
        await self.refresh()

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
        ids = [row.id for row in self.rows]
        where = ids.index(image_id) if image_id in ids else -1
        previous = ids[where - 1] if where > 0 else None
        following = ids[where + 1] if 0 <= where < len(ids) - 1 else None

        def step(event) -> None:  # ← and → step through the page shown, as in other galleries
            if not event.action.keydown or not dialog.value:
                return
            target = previous if event.key.arrow_left else following if event.key.arrow_right else None
            if target:
                background_tasks.create(self.open_detail(target))

        with self.dialogs, ui.dialog() as dialog, \
                ui.card().classes("w-full max-w-5xl p-0 gap-0 overflow-hidden") \
                .mark("detail").props("data-testid=detail"):
            ui.keyboard(on_key=step, ignore=["input", "select", "button", "textarea"]).mark("detail-keys")
            with ui.element("div").classes("grid grid-cols-1 md:grid-cols-[3fr_2fr] w-full"):
                with ui.element("div").classes("studio-checker flex items-center justify-center"):
                    ui.image(image_url(record.id)).props("fit=contain").classes("w-full max-h-[80vh]") \
                        .mark("detail-image").props("data-testid=detail-image")
                with ui.column().classes("p-5 gap-3 min-w-0"):
                    with ui.row().classes("w-full items-center no-wrap gap-1"):
                        ui.label("Image details").classes("text-lg font-semibold grow")
                        ui.button(icon="chevron_left", on_click=lambda: self.open_detail(previous)) \
                            .props('flat round dense aria-label="Previous image (←)"').mark("detail-previous") \
                            .set_enabled(previous is not None)
                        ui.button(icon="chevron_right", on_click=lambda: self.open_detail(following)) \
                            .props('flat round dense aria-label="Next image (→)"').mark("detail-next") \
                            .set_enabled(following is not None)
                        ui.button(icon="star" if record.favorite else "star_border",
                                  on_click=lambda: self._star_in_detail(record)) \
                            .props(f'flat round dense color={"amber" if record.favorite else "grey"} '
                                   f'aria-label="{"Unstar" if record.favorite else "Star"}"').mark("detail-star")
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
                            ui.button("Upscale ×2", icon="zoom_out_map",
                                      on_click=lambda: ui.navigate.to(f"/?upscale={record.id}")) \
                                .props("outline no-caps").mark("upscale")
                        ui.button("Delete", icon="delete", on_click=lambda: self.confirm_delete(record, dialog)) \
                            .props("flat no-caps color=negative").mark("delete")
        dialog.open()

    async def _star_in_detail(self, record: ImageRecord) -> None:
        await self.star(record.id, not record.favorite)
        await self.open_detail(record.id)

    @staticmethod
    def _parameters(record: ImageRecord, png: bytes) -> None:
        rows = [("Prompt", record.prompt), ("Negative prompt", record.negative_prompt or "—"),
                ("Model", record.model), ("Size", f"{record.width} × {record.height}"), ("Steps", record.steps),
                ("Guidance", record.guidance_scale), ("Seed", record.seed), ("Kind", record.kind.replace("_", " ")),
                ("Board", record.board or "—"), ("Created", when(record.created_at)),
                ("Took", f"{record.duration_ms} ms"),
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
