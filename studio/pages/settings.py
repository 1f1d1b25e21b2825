"""Settings (/settings): preferences (storage, default model and size) and the account's password."""

from __future__ import annotations

from nicegui import ui

from engine.data.tables import User
from engine.errors import EngineError
from engine.service import ImageEngine
from studio import auth
from studio.layout import card, frame
from studio.offload import off_loop
from studio.widgets import SIZE_CHOICES, ModelChoice, default_model, model_choices


def register(engine: ImageEngine) -> None:
    @ui.page("/settings", title="Settings · Image Studio")
    async def settings_page():
        user = await auth.require_user(engine, "/settings")
        if user is None:
            return
        storage = await off_loop(engine.storage_for, user)
        choices = await off_loop(model_choices, engine)
        with frame(user, "/settings", "Settings"):
            SettingsPage(engine, user, storage, choices)


class SettingsPage:
    def __init__(self, engine: ImageEngine, user: User, storage: dict, choices: list[ModelChoice]):
        """``storage``: ``engine.storage_for(user)``; ``choices``: ``model_choices(engine)`` (read off the loop)."""
        self.engine = engine
        self.guard = auth.Guard(engine, user)
        prefs = user.preferences or {}
        with ui.element("div").classes("grid grid-cols-1 lg:grid-cols-2 gap-5 w-full items-start"):
            with card("Preferences", icon="tune"):
                with ui.row().classes("w-full items-center no-wrap gap-3"):
                    with ui.column().classes("gap-0 grow"):
                        ui.label("Keep my images").classes("font-medium")
                        ui.label("Store generated images in your gallery and return hosted links from the API."
                                 if storage["enabled"] else "Storage is not available on your plan.") \
                            .classes("text-xs studio-muted")
                    self.storage = ui.switch(value=bool(prefs.get("storage", True))).mark("pref-storage")
                    self.storage.enabled = storage["enabled"]
                self.model = ui.select({c.spec.slug: c.label for c in choices if c.usable},
                                       value=default_model(engine, choices, prefs.get("default_model")),
                                       label="Default model").props("outlined options-dense").classes("w-full") \
                    .mark("pref-model")
                size = prefs.get("default_size", "1:1")
                self.size = ui.select({k: v for k, v in SIZE_CHOICES.items() if k != "custom"},
                                      value=size if size in SIZE_CHOICES and size != "custom" else "1:1",
                                      label="Default size").props("outlined options-dense").classes("w-full") \
                    .mark("pref-size")
                ui.button("Save preferences", icon="save", on_click=self.save).props("unelevated no-caps") \
                    .mark("save-preferences")
            with card("Account", icon="person"):
                with ui.column().classes("gap-0"):
                    ui.label(user.name or user.email.split("@")[0]).classes("font-medium")
                    ui.label(user.email + (" · administrator" if user.is_admin else "")) \
                        .classes("text-sm studio-muted")
                ui.label("Change password").classes("font-medium pt-2")
                self.current = ui.input("Current password", password=True) \
                    .props("outlined dense autocomplete=current-password").classes("w-full").mark("current-password")
                self.new = ui.input("New password (8+ characters)", password=True) \
                    .props("outlined dense autocomplete=new-password").classes("w-full").mark("new-password")
                self.repeat = ui.input("Repeat new password", password=True) \
                    .props("outlined dense autocomplete=new-password").classes("w-full").mark("repeat-password")
                ui.button("Change password", icon="lock_reset", on_click=self.change_password) \
                    .props("outline no-caps").mark("change-password")

    async def save(self) -> None:
        if await self.guard.user() is None:
            return
        try:
            await off_loop(self.engine.accounts.set_preferences, self.guard.user_id,
                           storage=bool(self.storage.value), default_model=self.model.value,
                           default_size=self.size.value)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        ui.notify("Preferences saved.", type="positive")

    async def change_password(self) -> None:
        user = await self.guard.user()
        if user is None:
            return
        if (self.new.value or "") != (self.repeat.value or ""):
            ui.notify("The new passwords don't match.", type="warning")
            return
        try:  # the engine checks the current password and the new one's length, and saves it
            changed = await off_loop(self.engine.accounts.change_password, user.id, self.current.value or "",
                                     self.new.value or "")
        except EngineError as exc:
            wrong_current = exc.field == "current_password"
            ui.notify("The current password is wrong." if wrong_current else exc.message, type="negative")
            return
        auth.keep_session(changed)  # every other session of this user ends; this one goes on
        self.current.value = self.new.value = self.repeat.value = ""
        ui.notify("Password changed. Every other session was signed out.", type="positive")
