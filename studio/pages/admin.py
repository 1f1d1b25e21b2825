"""Admin (/admin, admins only): users and workspaces, plans, models, and server settings.

The page checks ``is_admin`` on load, and every action checks it again against the database
(``Guard(admin=True)``), so a demoted admin's open page can't change anything. Every read and change goes
through the engine (``engine.admin``, ``engine.runtime``, the pipelines), off the event loop.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nicegui import ui

from engine.accounts.admin import AccountRow
from engine.data.tables import Plan, User
from engine.errors import EngineError, InvalidRequest
from engine.generation.catalog import ModelSpec
from engine.generation.pipelines import WeightsState
from engine.providers.registry import (
    DEFAULT_BASE_URLS,
    DEFAULT_PRICES,
    DEFAULT_ROUTES,
    LABELS,
    PROVIDER_NAMES,
    VENDOR_MODELS,
)
from engine.service import ImageEngine
from engine.tools.prompts import PROVIDERS
from studio import auth
from studio.layout import avatar, card, frame
from studio.offload import off_loop
from studio.queue import QueuePanel
from studio.widgets import ModelChoice, model_choices, size_text, state_chip

ORIGIN = re.compile(r"^https?://[^/\s]+$")
PLAN_NUMBERS = (("requests_per_minute", "Requests / minute"), ("requests_per_day", "Requests / day"),
                ("requests_per_month", "Requests / month"), ("max_concurrent_jobs", "Concurrent jobs"),
                ("max_batch_size", "Batch size"), ("monthly_credits", "Monthly credits"),
                ("storage_quota_mb", "Storage quota (MB)"))


def register(engine: ImageEngine) -> None:
    @ui.page("/admin", title="Admin · Image Studio")
    async def admin_page():
        user = await auth.require_admin(engine, "/admin")
        if user is None:
            return
        data = await off_loop(admin_data, engine)  # everything the tabs show first, read before building them
        with frame(user, "/admin", "Admin", "People, plans, models, server settings and the queue."):
            guard = auth.Guard(engine, user, admin=True)
            tabs = ui.tabs().props("dense align=left no-caps inline-label mobile-arrows outside-arrows") \
                .classes("w-full")
            with tabs:
                ui.tab("users", "Users", icon="group").mark("tab-users").props("data-testid=tab-users")
                ui.tab("plans", "Plans", icon="workspace_premium").mark("tab-plans")
                ui.tab("models", "Models", icon="memory").mark("tab-models").props("data-testid=tab-models")
                ui.tab("server", "Server", icon="settings").mark("tab-server")
                ui.tab("queue", "Queue", icon="queue").mark("tab-queue")
            with ui.tab_panels(tabs, value="users").classes("w-full bg-transparent").props("keep-alive"):
                with ui.tab_panel("users").classes("p-0 pt-2"):
                    UsersTab(engine, guard, *data.accounts)
                with ui.tab_panel("plans").classes("p-0 pt-2"):
                    PlansTab(engine, guard, *data.plans)
                with ui.tab_panel("models").classes("p-0 pt-2"):
                    ModelsTab(engine, guard, data.models)
                with ui.tab_panel("server").classes("p-0 pt-2"):
                    ServerTab(engine, guard, data.runtime, data.stored)
                with ui.tab_panel("queue").classes("p-0 pt-2"):
                    QueuePanel(engine, guard, everyone=True)  # every user's jobs, each cancellable


@dataclass
class AdminData:
    accounts: tuple[list[AccountRow], dict[str, str]]  # UsersTab.read
    plans: tuple[list[Plan], dict[str, int]]  # PlansTab.read
    models: ModelsView  # ModelsTab.read
    runtime: dict[str, Any]  # engine.runtime.all()
    stored: tuple[int, int]  # engine.admin.stored_images()


def admin_data(engine: ImageEngine) -> AdminData:
    """What the admin page shows when it opens (blocking: the database and the disk; call it off the loop)."""
    return AdminData(accounts=UsersTab.read(engine), plans=PlansTab.read(engine), models=ModelsTab.read(engine),
                     runtime=engine.runtime.all(), stored=engine.admin.stored_images())


async def _run(guard: auth.Guard, change: Callable[..., Any], *args, done: str | None = None) -> bool:
    """Run an admin change (an engine call, off the loop) if the caller is still an admin; report the outcome."""
    if await guard.user() is None:
        return False
    try:
        await off_loop(change, *args)
    except EngineError as exc:
        ui.notify(exc.message, type="negative")
        return False
    if done:
        ui.notify(done, type="positive")
    return True


# -- users and workspaces --------------------------------------------------------------------------

class UsersTab:
    """Drawn from rows read off the loop: at first by the page, then by ``await refresh()``."""

    def __init__(self, engine: ImageEngine, guard: auth.Guard, rows: list[AccountRow], plans: dict[str, str]):
        self.engine, self.guard = engine, guard
        self.dialogs = ui.element("div")
        with ui.row().classes("w-full items-center gap-3"):
            self.search = ui.input(placeholder="Search people", on_change=self.refresh) \
                .props("outlined dense clearable debounce=300").classes("grow min-w-48").mark("user-search")
            ui.button("Add user", icon="person_add", on_click=self.add_dialog).props("unelevated no-caps") \
                .mark("add-user")
        self.list_box = ui.column().classes("w-full gap-3 pt-3")
        self._shown = 0  # the newest refresh; an older one that answers late draws nothing
        self._draw(rows, plans)

    @staticmethod
    def read(engine: ImageEngine, query: str | None = None) -> tuple[list[AccountRow], dict[str, str]]:
        """The accounts matching ``query`` and the plans' names (blocking: call it off the loop)."""
        return engine.admin.list_accounts(query), {p.slug: p.name for p in engine.admin.list_plans()}

    async def refresh(self, _=None) -> None:
        self._shown += 1
        mine = self._shown
        rows, plans = await off_loop(self.read, self.engine, (self.search.value or "").strip() or None)
        if mine != self._shown or self.list_box.is_deleted:
            return
        self._draw(rows, plans)

    def _draw(self, rows: list[AccountRow], plans: dict[str, str]) -> None:
        self.list_box.clear()
        with self.list_box:
            for row in rows:
                self._row(row, plans)

    def _row(self, row: AccountRow, plans: dict[str, str]) -> None:
        user, workspace = row.user, row.workspace
        email = user.email
        with ui.row().classes("studio-card w-full items-center gap-x-4 gap-y-2 p-3 sm:p-4").mark(f"account-{email}"):
            avatar(user)
            with ui.column().classes("gap-0 grow min-w-48"):
                with ui.row().classes("items-center gap-1"):
                    ui.label(user.name or email.split("@")[0]).classes("font-medium")
                    if user.is_admin:
                        ui.chip("admin", color="primary", text_color="white").props("dense square")
                    if workspace.suspended:
                        ui.chip("suspended", color="negative", text_color="white").props("dense square")
                    if not user.is_active:
                        ui.chip("disabled", color="grey", text_color="white").props("dense square")
                ui.label(f"{email} · {row.images} images · {size_text(row.image_bytes)}") \
                    .classes("text-xs studio-muted")
            ui.select(plans, value=workspace.plan_slug, label="Plan",
                      on_change=lambda e, w=workspace.id: self.set_plan(w, e.value)) \
                .props("outlined dense options-dense").classes("w-36").mark(f"plan-{email}")
            with ui.row().classes("items-center gap-1 no-wrap"):
                credits = ui.number("Credits", value=workspace.credits, min=0, step=1, precision=0) \
                    .props("outlined dense").classes("w-32").mark(f"credits-{email}")
                ui.button(icon="check", on_click=lambda c=credits, w=workspace.id: self.set_credits(w, c.value)) \
                    .props('flat round dense aria-label="Set credits"').mark(f"set-credits-{email}").tooltip("Set credits")
            ui.switch("Suspended", value=workspace.suspended,
                      on_change=lambda e, w=workspace.id: self.set_suspended(w, e.value)).mark(f"suspend-{email}")
            ui.switch("Can sign in", value=user.is_active,
                      on_change=lambda e, u=user.id: self.set_active(u, e.value)).mark(f"active-{email}")
            ui.button(icon="password", on_click=lambda u=user: self.reset_dialog(u)) \
                .props('flat round dense aria-label="Reset password"').mark(f"reset-password-{email}") \
                .tooltip("Reset password")

    async def set_plan(self, workspace_id: str, slug: str) -> None:
        await _run(self.guard, self.engine.admin.set_plan, workspace_id, slug, done="Plan changed.")

    async def set_credits(self, workspace_id: str, value) -> None:
        credits = int(value) if value is not None else -1
        await _run(self.guard, self.engine.admin.set_credits, workspace_id, credits, done="Credits set.")

    async def set_suspended(self, workspace_id: str, suspended: bool) -> None:
        if await _run(self.guard, self.engine.admin.set_suspended, workspace_id, suspended,
                      done="Suspended: its API keys and generations are refused." if suspended
                      else "Suspension lifted."):
            await self.refresh()

    async def set_active(self, user_id: str, active: bool) -> None:
        await _run(self.guard, self.engine.admin.set_user_active, user_id, active,
                   done="Sign-in and API keys enabled." if active else "Sign-in and API keys disabled.")
        await self.refresh()  # also puts a refused switch back

    def reset_dialog(self, user: User) -> None:
        self.dialogs.clear()
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("w-full max-w-md p-6 gap-3") \
                .mark("reset-password-dialog"):
            ui.label(f"Reset the password of {user.email}").classes("text-lg font-semibold")
            ui.label("Their sessions end; their API keys keep working. Tell them the new password privately.") \
                .classes("text-sm studio-muted")
            password = ui.input("New password (8+ characters)", password=True, password_toggle_button=True) \
                .props("outlined dense").classes("w-full").mark("reset-password-value")

            def generated() -> None:
                password.value = secrets.token_urlsafe(12)
                password.props("type=text")  # a generated password has to be read to be passed on

            async def save() -> None:
                if await _run(self.guard, self.engine.admin.reset_password, user.id, password.value or "",
                              done=f"Password of {user.email} reset."):
                    dialog.close()

            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Generate one", icon="casino", on_click=generated).props("flat no-caps") \
                    .mark("reset-password-generate")
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Reset password", on_click=save).props("unelevated no-caps").mark("reset-password-save")
        dialog.open()

    async def add_dialog(self) -> None:
        if await self.guard.user() is None:
            return
        plans = {p.slug: p.name for p in await off_loop(self.engine.admin.list_plans)}
        self.dialogs.clear()
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("w-full max-w-md p-6 gap-3"):
            ui.label("Add a user").classes("text-lg font-semibold")
            name = ui.input("Name").props("outlined dense").classes("w-full").mark("new-user-name")
            email = ui.input("Email").props("outlined dense type=email").classes("w-full").mark("new-user-email")
            password = ui.input("Password (8+ characters)", password=True, password_toggle_button=True) \
                .props("outlined dense").classes("w-full").mark("new-user-password")
            plan = ui.select(plans, value="free" if "free" in plans else next(iter(plans), None), label="Plan") \
                .props("outlined dense").classes("w-full").mark("new-user-plan")
            is_admin = ui.checkbox("Administrator").mark("new-user-admin")

            async def create() -> None:
                if await self.guard.user() is None:
                    return
                try:
                    await off_loop(self.engine.admin.create_account, email.value or "", password.value or "",
                                   name=(name.value or "").strip(), is_admin=bool(is_admin.value),
                                   plan_slug=plan.value)
                except EngineError as exc:
                    ui.notify(exc.message, type="negative")
                    return
                dialog.close()
                ui.notify(f"Added {email.value}. Share the password with them privately.", type="positive")
                await self.refresh()

            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Add user", on_click=create).props("unelevated no-caps").mark("create-user")
        dialog.open()


# -- plans -----------------------------------------------------------------------------------------

class PlansTab:
    def __init__(self, engine: ImageEngine, guard: auth.Guard, plans: list[Plan], members: dict[str, int]):
        self.engine, self.guard = engine, guard
        self.dialogs = ui.element("div")
        with ui.row().classes("w-full justify-end"):
            ui.button("New plan", icon="add", on_click=lambda: self.edit(None)).props("unelevated no-caps") \
                .mark("new-plan")
        self.list_box = ui.element("div").classes("grid grid-cols-1 md:grid-cols-2 xl:grid-cols-3 gap-3 w-full pt-3")
        self._shown = 0
        self._draw(plans, members)

    @staticmethod
    def read(engine: ImageEngine) -> tuple[list[Plan], dict[str, int]]:
        """Every plan and how many workspaces are on each (blocking: call it off the loop)."""
        return engine.admin.list_plans(), engine.admin.plan_workspaces()

    async def refresh(self) -> None:
        self._shown += 1
        mine = self._shown
        plans, members = await off_loop(self.read, self.engine)
        if mine != self._shown or self.list_box.is_deleted:
            return
        self._draw(plans, members)

    def _draw(self, plans: list[Plan], members: dict[str, int]) -> None:
        self.list_box.clear()
        with self.list_box:
            for plan in plans:
                with ui.column().classes("studio-card p-4 gap-2").mark(f"plan-card-{plan.slug}"):
                    with ui.row().classes("w-full items-center no-wrap"):
                        with ui.column().classes("gap-0 grow"):
                            ui.label(plan.name).classes("font-semibold text-lg")
                            ui.label(f"{plan.slug} · ${plan.price_usd_month:g}/month · "
                                     f"{members.get(plan.slug, 0)} workspace(s)").classes("text-xs studio-muted")
                        ui.button(icon="edit", on_click=lambda p=plan: self.edit(p)).props('flat round dense aria-label="Edit plan"') \
                            .mark(f"edit-plan-{plan.slug}")
                        ui.button(icon="delete", on_click=lambda p=plan: self.delete(p)) \
                            .props('flat round dense color=negative aria-label="Delete plan"').mark(f"delete-plan-{plan.slug}")
                    with ui.element("div").classes("grid grid-cols-2 gap-x-4 gap-y-0 text-sm"):
                        for field, label in PLAN_NUMBERS:
                            ui.label(label).classes("studio-muted")
                            ui.label(f"{getattr(plan, field):,}")
                        ui.label("Storage").classes("studio-muted")
                        ui.label("on" if plan.storage_enabled else "off")

    async def edit(self, plan: Plan | None) -> None:
        if await self.guard.user() is None:
            return
        self.dialogs.clear()
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("w-full max-w-lg p-6 gap-3"):
            ui.label("New plan" if plan is None else f"Edit {plan.name}").classes("text-lg font-semibold")
            with ui.element("div").classes("grid grid-cols-2 gap-2 w-full"):
                slug = ui.input("Slug", value=plan.slug if plan else "").props("outlined dense") \
                    .mark("plan-slug")
                slug.enabled = plan is None
                name = ui.input("Name", value=plan.name if plan else "").props("outlined dense").mark("plan-name")
                numbers = {field: ui.number(label, value=getattr(plan, field) if plan else Plan.model_fields[
                    field].default, min=0, step=1, precision=0).props("outlined dense").mark(f"plan-{field}")
                    for field, label in PLAN_NUMBERS}
                price = ui.number("Price (USD / month)", value=plan.price_usd_month if plan else 0, min=0, step=1) \
                    .props("outlined dense").mark("plan-price")
            storage = ui.switch("Storage", value=plan.storage_enabled if plan else False).mark("plan-storage")

            async def save() -> None:
                values = {"slug": slug.value, "name": name.value, "storage_enabled": storage.value,
                          "price_usd_month": float(price.value or 0),
                          **{f: int(n.value) if n.value is not None else -1 for f, n in numbers.items()}}
                if await _run(self.guard, self.engine.admin.save_plan, values, done="Plan saved."):
                    dialog.close()
                    await self.refresh()

            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Save plan", on_click=save).props("unelevated no-caps").mark("save-plan")
        dialog.open()

    async def delete(self, plan: Plan) -> None:
        if await _run(self.guard, self.engine.admin.delete_plan, plan.slug, done=f"Deleted the {plan.name} plan."):
            await self.refresh()


# -- models ----------------------------------------------------------------------------------------

@dataclass
class ModelsView:
    specs: list[ModelSpec]
    aliases: dict[str, str]  # requested slug -> the model that runs it
    choices: list[ModelChoice]
    used: int  # bytes of the loaded models
    loaded: dict[str, int]  # slug -> bytes


class ModelsTab:
    def __init__(self, engine: ImageEngine, guard: auth.Guard, view: ModelsView):
        self.engine, self.guard = engine, guard
        self.pulls: dict[str, tuple[int, int]] = {}  # slug -> (done, total) bytes of a running pull
        self.bars: dict[str, ui.linear_progress] = {}
        self.memory_box = ui.column().classes("w-full studio-card p-4 gap-2")
        self.alias_box = ui.column().classes("w-full studio-card p-4 gap-2").mark("model-aliases")
        self.list_box = ui.column().classes("w-full gap-3 pt-3")
        self._shown = 0
        ui.timer(0.5, self._show_pulls)
        self._draw(view)

    @staticmethod
    def read(engine: ImageEngine) -> ModelsView:
        """The catalog, the aliases, every model's state and what is loaded (blocking: the database, the disk,
        and the pipeline manager's lock, which an eviction holds while it frees a model)."""
        pipelines = engine.pipelines
        return ModelsView(specs=engine.catalog.all(), aliases=engine.model_aliases(),
                          choices=model_choices(engine, helpers=True),
                          used=pipelines.used_bytes(), loaded={p.spec.slug: p.bytes for p in pipelines.loaded()})

    def _aliases_card(self, specs: list[ModelSpec], aliases: dict[str, str]) -> None:
        """A requested slug served by a model that runs here (the proprietary ones of the seed API, say)."""
        self.alias_box.clear()
        with self.alias_box:
            ui.label("Model aliases").classes("font-semibold")
            ui.label("Serve a slug clients ask for (such as flux-2-pro, which has no open weights) with a model "
                     "that runs here. Responses name both.").classes("text-sm studio-muted")
            for slug, target in aliases.items():
                with ui.row().classes("items-center gap-2").mark(f"alias-{slug}"):
                    ui.label(f"{slug} → {target}").classes("font-mono text-sm")
                    ui.button(icon="delete", on_click=lambda s=slug: self.remove_alias(s)) \
                        .props('flat dense round aria-label="Remove alias"').mark(f"remove-alias-{slug}")
            with ui.row().classes("w-full items-end gap-2"):
                slug = ui.select([spec.slug for spec in specs if not spec.open_weights], label="Slug",
                                 new_value_mode="add-unique").props("outlined dense").classes("w-48") \
                    .mark("alias-slug")
                target = ui.select([spec.slug for spec in specs if spec.open_weights], label="Runs") \
                    .props("outlined dense").classes("w-48").mark("alias-target")
                ui.button("Save alias", on_click=lambda: self.save_alias(slug.value, target.value)) \
                    .props("unelevated no-caps").mark("save-alias")

    async def save_alias(self, slug: str | None, target: str | None) -> None:
        if await self.guard.user() is None:
            return
        if not slug or not target:
            ui.notify("Choose a slug and the model that runs it.", type="warning")
            return
        try:
            await off_loop(self.engine.set_model_alias, slug, target)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        ui.notify(f"{slug} now runs {target}.", type="positive")
        await self.refresh()

    async def remove_alias(self, slug: str) -> None:
        if await self.guard.user() is None:
            return
        try:
            await off_loop(self.engine.remove_model_alias, slug)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        ui.notify(f"Removed the alias {slug}.", type="positive")
        await self.refresh()

    async def refresh(self) -> None:
        self._shown += 1
        mine = self._shown
        view = await off_loop(self.read, self.engine)
        if mine != self._shown or self.list_box.is_deleted:
            return
        self._draw(view)

    def _draw(self, view: ModelsView) -> None:
        used, budget, loaded = view.used, self.engine.pipelines.budget_bytes, view.loaded
        self.memory_box.clear()
        with self.memory_box:
            with ui.row().classes("w-full items-center"):
                ui.label("Model memory").classes("font-semibold grow")
                ui.label(f"{size_text(used)} of {size_text(budget)} · {self.engine.device}") \
                    .classes("text-sm studio-muted").mark("memory-use")
            ui.linear_progress(value=used / budget if budget else 0, show_value=False).props("rounded size=8px")
        self._aliases_card(view.specs, view.aliases)
        self.list_box.clear()
        self.bars.clear()
        with self.list_box:
            for choice in view.choices:
                spec = choice.spec
                with ui.row().classes("studio-card w-full items-center no-wrap gap-3 p-3 sm:p-4") \
                        .mark(f"model-{spec.slug}"):
                    with ui.column().classes("gap-1 grow min-w-0"):
                        with ui.row().classes("items-center gap-2"):
                            ui.label(spec.name).classes("font-medium")
                            state_chip(choice.state)
                            if spec.slug in loaded:
                                ui.label(size_text(loaded[spec.slug])).classes("text-xs studio-muted")
                        helps = "" if spec.text_to_image else f"{spec.task} helper · "
                        ui.label(f"{spec.slug} · {helps}{choice.reason or spec.description}") \
                            .classes("text-xs studio-muted")
                        bar = ui.linear_progress(value=0, show_value=False).props("rounded size=6px") \
                            .mark(f"pull-progress-{spec.slug}")
                        bar.visible = spec.slug in self.pulls
                        self.bars[spec.slug] = bar
                    if spec.open_weights:
                        with ui.row().classes("gap-1 shrink-0 justify-end"):
                            if choice.state in (WeightsState.DOWNLOADABLE, WeightsState.UNAVAILABLE) or spec.tiny:
                                ui.button("Build" if spec.tiny else "Pull", icon="download",
                                          on_click=lambda s=spec.slug: self.pull(s)) \
                                    .props("flat dense no-caps").mark(f"pull-{spec.slug}")
                            if spec.slug in loaded:
                                ui.button("Unload", icon="eject", on_click=lambda s=spec.slug: self.unload(s)) \
                                    .props("flat dense no-caps").mark(f"unload-{spec.slug}")
                            elif choice.state != WeightsState.UNAVAILABLE:
                                ui.button("Load", icon="play_arrow", on_click=lambda s=spec.slug: self.load(s)) \
                                    .props("flat dense no-caps").mark(f"load-{spec.slug}")

    def _show_pulls(self) -> None:
        for slug, (done, total) in self.pulls.items():
            if slug in self.bars and total:
                self.bars[slug].visible = True
                self.bars[slug].value = done / total

    async def pull(self, slug: str) -> None:
        if await self.guard.user() is None or slug in self.pulls:
            return
        self.pulls[slug] = (0, 0)
        self.bars[slug].visible = True
        self.bars[slug].props("indeterminate")
        ui.notify(f"Pulling {slug}…")

        def progress(done: int, total: int) -> None:  # called from the download thread
            self.pulls[slug] = (done, total)

        try:
            await off_loop(self.engine.pull_model, slug, progress)
        except EngineError as exc:
            ui.notify(exc.message, type="negative", multi_line=True)
        except Exception as exc:  # network and disk errors of the hub client
            ui.notify(f"Pull of {slug} failed: {exc}", type="negative", multi_line=True)
        else:
            ui.notify(f"{slug} is ready.", type="positive")
        finally:
            self.pulls.pop(slug, None)
        await self.refresh()

    async def load(self, slug: str) -> None:
        if await self.guard.user() is None:
            return
        notice = ui.notification(f"Loading {slug}…", spinner=True, timeout=None)
        try:
            await off_loop(self.engine.pipelines.get, slug)
        except EngineError as exc:
            ui.notify(exc.message, type="negative", multi_line=True)
        finally:
            notice.dismiss()
        await self.refresh()

    async def unload(self, slug: str) -> None:
        if await self.guard.user() is None:
            return
        await off_loop(self.engine.pipelines.unload, slug)  # frees the weights (and the GPU's cache)
        ui.notify(f"Unloaded {slug}.")
        await self.refresh()


# -- server settings -------------------------------------------------------------------------------

class ServerTab:
    def __init__(self, engine: ImageEngine, guard: auth.Guard, runtime: dict[str, Any], stored: tuple[int, int]):
        """``runtime``: ``engine.runtime.all()``; ``stored``: ``engine.admin.stored_images()`` (read off the loop)."""
        self.engine, self.guard = engine, guard
        self.runtime = runtime
        count, stored_bytes = stored
        with ui.element("div").classes("grid grid-cols-1 lg:grid-cols-2 gap-5 w-full items-start"):
            with card("Storage", icon="inventory_2"):
                ui.label(f"{count:,} images, {size_text(stored_bytes)} in {engine.settings.images_dir}") \
                    .classes("text-sm studio-muted break-all")
                ui.switch("Store generated images (where the plan allows it)",
                          value=bool(runtime.get("storage_enabled")),
                          on_change=lambda e: self.set("storage_enabled", bool(e.value))).mark("storage-enabled")
            with card("Limits", icon="speed"):
                ui.label("A server-wide cap on batch size, over every plan's own.").classes("text-sm studio-muted")
                with ui.row().classes("items-center gap-2 no-wrap"):
                    batch = ui.number("Max batch size", value=runtime.get("max_batch_size"), min=1, max=1000,
                                      step=1, precision=0).props("outlined dense").classes("w-40") \
                        .mark("max-batch-size")
                    ui.button("Save", on_click=lambda: self.set(
                        "max_batch_size", int(batch.value) if batch.value is not None else 0)) \
                        .props("unelevated no-caps").mark("save-batch")
            self._text_model_card()
            self._cors_card()
            for name in PROVIDER_NAMES:
                self._provider_card(name)

    async def set(self, key: str, value) -> bool:
        if await self.guard.user() is None:
            return False
        try:
            if key == "max_batch_size" and value < 1:
                raise InvalidRequest("the batch size must be at least 1", field=key)
            await off_loop(self.engine.runtime.set, key, value)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return False
        ui.notify("Saved.", type="positive")
        return True

    def _provider_card(self, name: str) -> None:
        """A vendor's API key (stored encrypted; never shown again), its base URL, a Test button, and what goes
        there: its slugs (with their prices) or, for Stability AI, background removal."""
        config = dict(self.runtime.get(f"provider_{name}") or {})
        routes = DEFAULT_ROUTES | dict(self.runtime.get("provider_routes") or {})
        prices = dict(self.runtime.get("provider_prices") or {})
        slugs = [slug for slug, (vendor, _) in VENDOR_MODELS.items() if vendor == name]
        with card(LABELS[name], icon="cloud"):
            ui.label("Proprietary models through the vendor, under this server's keys, limits and credits. "
                     "Vendor calls cost real money: the prices are in credits per image (up to 512², above)."
                     if slugs else "Background removal by Stability AI's engine instead of local rembg.") \
                .classes("text-sm studio-muted")
            key = ui.input("API key", password=True, password_toggle_button=True,
                           placeholder="set" if config.get("api_key") else "not set") \
                .props("outlined dense").classes("w-full").mark(f"provider-key-{name}")
            base_url = ui.input("Base URL", value=config.get("base_url") or DEFAULT_BASE_URLS[name]) \
                .props("outlined dense").classes("w-full").mark(f"provider-url-{name}")
            switches, price_fields = {}, {}
            for slug in slugs:
                small, large = prices.get(slug) or DEFAULT_PRICES[slug]
                with ui.row().classes("items-center gap-2 no-wrap w-full"):
                    switches[slug] = ui.switch(slug, value=routes.get(slug) == name).mark(f"route-{slug}")
                    price_fields[slug] = (
                        ui.number("≤512²", value=small, min=0, precision=0).props("outlined dense").classes("w-24")
                        .mark(f"price-small-{slug}"),
                        ui.number("larger", value=large, min=0, precision=0).props("outlined dense")
                        .classes("w-24").mark(f"price-large-{slug}"))
            if not slugs:
                cutouts = ui.switch("Remove backgrounds with Stability AI",
                                    value=self.runtime.get("background_removal") == "stability") \
                    .mark("background-removal-stability")

            async def save() -> None:
                value = {"base_url": (base_url.value or "").strip() or DEFAULT_BASE_URLS[name],
                         "api_key": key.value or config.get("api_key")}
                if not await self.set(f"provider_{name}", {k: v for k, v in value.items() if v}):
                    return
                if slugs:
                    chosen = dict(self.runtime.get("provider_routes") or {})
                    chosen.update({slug: (name if switch.value else "") for slug, switch in switches.items()})
                    chosen_prices = dict(prices)
                    chosen_prices.update({slug: [int(a.value or 0), int(b.value or 0)]
                                          for slug, (a, b) in price_fields.items()})
                    await self.set("provider_routes", chosen)
                    await self.set("provider_prices", chosen_prices)
                else:
                    await self.set("background_removal", "stability" if cutouts.value else "local")
                key.value = ""

            async def test() -> None:
                if await self.guard.user() is None:
                    return
                try:
                    said = await off_loop(self.engine.test_provider, name)
                except EngineError as exc:
                    ui.notify(exc.message, type="negative", multi_line=True)
                    return
                ui.notify(said, type="positive")

            with ui.row().classes("gap-2"):
                ui.button("Save", on_click=save).props("unelevated no-caps").mark(f"save-provider-{name}")
                ui.button("Test", icon="network_check", on_click=test).props("outline no-caps") \
                    .mark(f"test-provider-{name}")

    def _text_model_card(self) -> None:
        config = dict(self.runtime.get("text_model") or {"provider": "builtin"})
        with card("AI tools: prompt enhancement", icon="auto_fix_high"):
            ui.label("The built-in enhancer works offline. An OpenAI-compatible server or a local transformers "
                     "model can write richer prompts; if it fails, the built-in one answers instead.") \
                .classes("text-sm studio-muted")
            provider = ui.select(list(PROVIDERS), value=config.get("provider", "builtin"), label="Text model") \
                .props("outlined dense").classes("w-full").mark("text-provider")
            with ui.column().classes("w-full gap-2") as openai_fields:
                base_url = ui.input("Base URL", value=config.get("base_url") or "",
                                    placeholder="http://localhost:11434/v1").props("outlined dense") \
                    .classes("w-full").mark("text-base-url")
                model = ui.input("Model", value=config.get("model") or "", placeholder="llama3.2") \
                    .props("outlined dense").classes("w-full").mark("text-model")
                api_key = ui.input("API key", password=True,
                                   placeholder="unchanged" if config.get("api_key") else "optional") \
                    .props("outlined dense").classes("w-full").mark("text-api-key")
            local_path = ui.input("Local model folder", value=config.get("local_path") or "",
                                  placeholder="/models/qwen2.5-0.5b-instruct").props("outlined dense") \
                .classes("w-full").mark("text-local-path")
            openai_fields.bind_visibility_from(provider, "value", value="openai")
            local_path.bind_visibility_from(provider, "value", value="transformers")
            result = ui.label().classes("text-sm studio-muted").mark("text-try-result")

            async def save() -> None:
                chosen = {"provider": provider.value}
                if provider.value == "openai":
                    chosen |= {"base_url": (base_url.value or "").strip() or None,
                               "model": (model.value or "").strip() or None,
                               "api_key": api_key.value or config.get("api_key")}
                elif provider.value == "transformers":
                    chosen["local_path"] = (local_path.value or "").strip() or None
                if await self.set("text_model", {k: v for k, v in chosen.items() if v is not None}):
                    config.clear()
                    config.update(chosen)
                    api_key.value = ""

            async def try_it() -> None:
                if await self.guard.user() is None:
                    return
                # Building the enhancer reads the admin's choice; a remote text model may take seconds to answer.
                enhanced = await off_loop(lambda: self.engine.prompt_enhancer().enhance("a cat on a windowsill"))
                result.text = f"{enhanced.source}: {enhanced.prompt}" + (
                    f" (fell back: {enhanced.fallback_reason})" if enhanced.fallback_reason else "")

            with ui.row().classes("gap-2"):
                ui.button("Save", on_click=save).props("unelevated no-caps").mark("save-text-model")
                ui.button("Try it", icon="play_arrow", on_click=try_it).props("outline no-caps") \
                    .mark("try-text-model")

    def _cors_card(self) -> None:
        runtime = self.runtime
        with card("CORS for the public API", icon="public"):
            ui.label("Off: any website may call the API from a browser with a key. Strict: only the origins below.") \
                .classes("text-sm studio-muted")
            strict = ui.switch("Strict mode", value=bool(runtime.get("cors_strict"))).mark("cors-strict")
            origins = ui.textarea("Allowed origins, one per line", value="\n".join(runtime.get("cors_origins")),
                                  placeholder="https://example.com").props("outlined autogrow") \
                .classes("w-full").mark("cors-origins")

            async def save() -> None:
                listed = [line.strip().rstrip("/") for line in (origins.value or "").splitlines() if line.strip()]
                bad = [o for o in listed if not ORIGIN.match(o)]
                if bad:
                    ui.notify(f"Not an origin (scheme://host[:port]): {bad[0]}", type="negative")
                    return
                if await self.set("cors_origins", listed):
                    await off_loop(self.engine.runtime.set, "cors_strict", bool(strict.value))

            ui.button("Save", on_click=save).props("unelevated no-caps").mark("save-cors")
