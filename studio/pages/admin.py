"""Admin (/admin, admins only): users and workspaces, plans, models, and server settings.

The page checks ``is_admin`` on load, and every action checks it again against the database
(``Guard(admin=True)``), so a demoted admin's open page can't change anything.
"""

from __future__ import annotations

import asyncio
import re

from nicegui import ui
from sqlalchemy import func
from sqlmodel import col, select

from engine.accounts import admin
from engine.data.db import session_scope
from engine.errors import EngineError, InvalidRequest
from engine.data.tables import ImageRecord, Plan, User
from engine.generation.pipelines import WeightsState
from engine.tools.prompts import PROVIDERS
from engine.service import ImageEngine
from studio import auth
from studio.layout import avatar, card, frame
from studio.widgets import model_choices, size_text, state_chip

ORIGIN = re.compile(r"^https?://[^/\s]+$")
PLAN_NUMBERS = (("requests_per_minute", "Requests / minute"), ("requests_per_day", "Requests / day"),
                ("requests_per_month", "Requests / month"), ("max_concurrent_jobs", "Concurrent jobs"),
                ("max_batch_size", "Batch size"), ("monthly_credits", "Monthly credits"),
                ("storage_quota_mb", "Storage quota (MB)"))


def register(engine: ImageEngine) -> None:
    @ui.page("/admin", title="Admin · Image Studio")
    def admin_page():
        user = auth.require_admin(engine, "/admin")
        if user is None:
            return
        with frame(user, "/admin", "Admin", "People, plans, models and server settings."):
            guard = auth.Guard(engine, user, admin=True)
            tabs = ui.tabs().props("dense align=left no-caps inline-label mobile-arrows outside-arrows") \
                .classes("w-full")
            with tabs:
                ui.tab("users", "Users", icon="group").mark("tab-users").props("data-testid=tab-users")
                ui.tab("plans", "Plans", icon="workspace_premium").mark("tab-plans")
                ui.tab("models", "Models", icon="memory").mark("tab-models").props("data-testid=tab-models")
                ui.tab("server", "Server", icon="settings").mark("tab-server")
            with ui.tab_panels(tabs, value="users").classes("w-full bg-transparent").props("keep-alive"):
                with ui.tab_panel("users").classes("p-0 pt-2"):
                    UsersTab(engine, guard)
                with ui.tab_panel("plans").classes("p-0 pt-2"):
                    PlansTab(engine, guard)
                with ui.tab_panel("models").classes("p-0 pt-2"):
                    ModelsTab(engine, guard)
                with ui.tab_panel("server").classes("p-0 pt-2"):
                    ServerTab(engine, guard)


def _run(guard: auth.Guard, change, done: str | None = None) -> bool:
    """Run an admin change (a function of a Session) if the caller is still an admin; report the outcome."""
    if guard.user() is None:
        return False
    try:
        with session_scope(guard.engine.db) as session:
            change(session)
    except EngineError as exc:
        ui.notify(exc.message, type="negative")
        return False
    if done:
        ui.notify(done, type="positive")
    return True


# -- users and workspaces --------------------------------------------------------------------------

class UsersTab:
    def __init__(self, engine: ImageEngine, guard: auth.Guard):
        self.engine, self.guard = engine, guard
        self.dialogs = ui.element("div")
        with ui.row().classes("w-full items-center gap-3"):
            self.search = ui.input(placeholder="Search people", on_change=self.refresh) \
                .props("outlined dense clearable debounce=300").classes("grow min-w-48").mark("user-search")
            ui.button("Add user", icon="person_add", on_click=self.add_dialog).props("unelevated no-caps") \
                .mark("add-user")
        self.list_box = ui.column().classes("w-full gap-3 pt-3")
        self.refresh()

    def refresh(self, _=None) -> None:
        with session_scope(self.engine.db) as session:
            rows = admin.list_accounts(session, (self.search.value or "").strip() or None)
            plans = {p.slug: p.name for p in admin.list_plans(session)}
        self.list_box.clear()
        with self.list_box:
            for row in rows:
                self._row(row, plans)

    def _row(self, row: admin.AccountRow, plans: dict[str, str]) -> None:
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
                    .props("flat round dense").mark(f"set-credits-{email}").tooltip("Set credits")
            ui.switch("Suspended", value=workspace.suspended,
                      on_change=lambda e, w=workspace.id: self.set_suspended(w, e.value)).mark(f"suspend-{email}")
            ui.switch("Can sign in", value=user.is_active,
                      on_change=lambda e, u=user.id: self.set_active(u, e.value)).mark(f"active-{email}")

    def set_plan(self, workspace_id: str, slug: str) -> None:
        _run(self.guard, lambda s: admin.set_plan(s, workspace_id, slug), "Plan changed.")

    def set_credits(self, workspace_id: str, value) -> None:
        credits = int(value) if value is not None else -1
        _run(self.guard, lambda s: admin.set_credits(s, workspace_id, credits), "Credits set.")

    def set_suspended(self, workspace_id: str, suspended: bool) -> None:
        if _run(self.guard, lambda s: admin.set_suspended(s, workspace_id, suspended),
                "Suspended: its API keys and generations are refused." if suspended else "Suspension lifted."):
            self.refresh()

    def set_active(self, user_id: str, active: bool) -> None:
        _run(self.guard, lambda s: admin.set_user_active(s, user_id, active),
             "Sign-in and API keys enabled." if active else "Sign-in and API keys disabled.")
        self.refresh()  # also puts a refused switch back

    def add_dialog(self) -> None:
        if self.guard.user() is None:
            return
        with session_scope(self.engine.db) as session:
            plans = {p.slug: p.name for p in admin.list_plans(session)}
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
                if self.guard.user() is None:
                    return
                try:
                    await asyncio.to_thread(self._create, email.value or "", password.value or "",
                                            (name.value or "").strip(), bool(is_admin.value), plan.value)
                except EngineError as exc:
                    ui.notify(exc.message, type="negative")
                    return
                dialog.close()
                ui.notify(f"Added {email.value}. Share the password with them privately.", type="positive")
                self.refresh()

            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Add user", on_click=create).props("unelevated no-caps").mark("create-user")
        dialog.open()

    def _create(self, email: str, password: str, name: str, is_admin: bool, plan: str) -> User:
        with session_scope(self.engine.db) as session:
            return admin.create_account(session, email, password, name=name, is_admin=is_admin, plan_slug=plan)


# -- plans -----------------------------------------------------------------------------------------

class PlansTab:
    def __init__(self, engine: ImageEngine, guard: auth.Guard):
        self.engine, self.guard = engine, guard
        self.dialogs = ui.element("div")
        with ui.row().classes("w-full justify-end"):
            ui.button("New plan", icon="add", on_click=lambda: self.edit(None)).props("unelevated no-caps") \
                .mark("new-plan")
        self.list_box = ui.element("div").classes("grid grid-cols-1 md:grid-cols-2 xl:grid-cols-3 gap-3 w-full pt-3")
        self.refresh()

    def refresh(self) -> None:
        with session_scope(self.engine.db) as session:
            plans = admin.list_plans(session)
            members = admin.plan_workspaces(session)
        self.list_box.clear()
        with self.list_box:
            for plan in plans:
                with ui.column().classes("studio-card p-4 gap-2").mark(f"plan-card-{plan.slug}"):
                    with ui.row().classes("w-full items-center no-wrap"):
                        with ui.column().classes("gap-0 grow"):
                            ui.label(plan.name).classes("font-semibold text-lg")
                            ui.label(f"{plan.slug} · ${plan.price_usd_month:g}/month · "
                                     f"{members.get(plan.slug, 0)} workspace(s)").classes("text-xs studio-muted")
                        ui.button(icon="edit", on_click=lambda p=plan: self.edit(p)).props("flat round dense") \
                            .mark(f"edit-plan-{plan.slug}")
                        ui.button(icon="delete", on_click=lambda p=plan: self.delete(p)) \
                            .props("flat round dense color=negative").mark(f"delete-plan-{plan.slug}")
                    with ui.element("div").classes("grid grid-cols-2 gap-x-4 gap-y-0 text-sm"):
                        for field, label in PLAN_NUMBERS:
                            ui.label(label).classes("studio-muted")
                            ui.label(f"{getattr(plan, field):,}")
                        ui.label("Storage").classes("studio-muted")
                        ui.label("on" if plan.storage_enabled else "off")

    def edit(self, plan: Plan | None) -> None:
        if self.guard.user() is None:
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

            def save() -> None:
                values = {"slug": slug.value, "name": name.value, "storage_enabled": storage.value,
                          "price_usd_month": float(price.value or 0),
                          **{f: int(n.value) if n.value is not None else -1 for f, n in numbers.items()}}
                if _run(self.guard, lambda s: admin.save_plan(s, values), "Plan saved."):
                    dialog.close()
                    self.refresh()

            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Save plan", on_click=save).props("unelevated no-caps").mark("save-plan")
        dialog.open()

    def delete(self, plan: Plan) -> None:
        if _run(self.guard, lambda s: admin.delete_plan(s, plan.slug), f"Deleted the {plan.name} plan."):
            self.refresh()


# -- models ----------------------------------------------------------------------------------------

class ModelsTab:
    def __init__(self, engine: ImageEngine, guard: auth.Guard):
        self.engine, self.guard = engine, guard
        self.pulls: dict[str, tuple[int, int]] = {}  # slug -> (done, total) bytes of a running pull
        self.bars: dict[str, ui.linear_progress] = {}
        self.memory_box = ui.column().classes("w-full studio-card p-4 gap-2")
        self.alias_box = ui.column().classes("w-full studio-card p-4 gap-2").mark("model-aliases")
        self.list_box = ui.column().classes("w-full gap-3 pt-3")
        ui.timer(0.5, self._show_pulls)
        self.refresh()

    def _aliases_card(self) -> None:
        """A requested slug served by a model that runs here (the proprietary ones of the seed API, say)."""
        specs = self.engine.catalog.all()
        aliases = self.engine.model_aliases()
        self.alias_box.clear()
        with self.alias_box:
            ui.label("Model aliases").classes("font-semibold")
            ui.label("Serve a slug clients ask for (such as flux-2-pro, which has no open weights) with a model "
                     "that runs here. Responses name both.").classes("text-sm studio-muted")
            for slug, target in aliases.items():
                with ui.row().classes("items-center gap-2").mark(f"alias-{slug}"):
                    ui.label(f"{slug} → {target}").classes("font-mono text-sm")
                    ui.button(icon="delete", on_click=lambda s=slug: self.remove_alias(s)) \
                        .props("flat dense round").mark(f"remove-alias-{slug}")
            with ui.row().classes("w-full items-end gap-2"):
                slug = ui.select([spec.slug for spec in specs if not spec.open_weights], label="Slug",
                                 new_value_mode="add-unique").props("outlined dense").classes("w-48") \
                    .mark("alias-slug")
                target = ui.select([spec.slug for spec in specs if spec.open_weights], label="Runs") \
                    .props("outlined dense").classes("w-48").mark("alias-target")
                ui.button("Save alias", on_click=lambda: self.save_alias(slug.value, target.value)) \
                    .props("unelevated no-caps").mark("save-alias")

    def save_alias(self, slug: str | None, target: str | None) -> None:
        if self.guard.user() is None:
            return
        if not slug or not target:
            ui.notify("Choose a slug and the model that runs it.", type="warning")
            return
        try:
            self.engine.set_model_alias(slug, target)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        ui.notify(f"{slug} now runs {target}.", type="positive")
        self.refresh()

    def remove_alias(self, slug: str) -> None:
        if self.guard.user() is None:
            return
        try:
            self.engine.remove_model_alias(slug)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        ui.notify(f"Removed the alias {slug}.", type="positive")
        self.refresh()

    def refresh(self) -> None:
        pipelines = self.engine.pipelines
        used, budget = pipelines.used_bytes(), pipelines.budget_bytes
        loaded = {p.spec.slug: p for p in pipelines.loaded()}
        self.memory_box.clear()
        with self.memory_box:
            with ui.row().classes("w-full items-center"):
                ui.label("Model memory").classes("font-semibold grow")
                ui.label(f"{size_text(used)} of {size_text(budget)} · {self.engine.device}") \
                    .classes("text-sm studio-muted").mark("memory-use")
            ui.linear_progress(value=used / budget if budget else 0, show_value=False).props("rounded size=8px")
        self._aliases_card()
        self.list_box.clear()
        self.bars.clear()
        with self.list_box:
            for choice in model_choices(self.engine):
                spec = choice.spec
                with ui.row().classes("studio-card w-full items-center no-wrap gap-3 p-3 sm:p-4") \
                        .mark(f"model-{spec.slug}"):
                    with ui.column().classes("gap-1 grow min-w-0"):
                        with ui.row().classes("items-center gap-2"):
                            ui.label(spec.name).classes("font-medium")
                            state_chip(choice.state)
                            if spec.slug in loaded:
                                ui.label(size_text(loaded[spec.slug].bytes)).classes("text-xs studio-muted")
                        ui.label(f"{spec.slug} · {choice.reason or spec.description}") \
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
        if self.guard.user() is None or slug in self.pulls:
            return
        self.pulls[slug] = (0, 0)
        self.bars[slug].visible = True
        self.bars[slug].props("indeterminate")
        ui.notify(f"Pulling {slug}…")

        def progress(done: int, total: int) -> None:  # called from the download thread
            self.pulls[slug] = (done, total)

        try:
            await asyncio.to_thread(self.engine.pipelines.pull, slug, progress)
        except EngineError as exc:
            ui.notify(exc.message, type="negative", multi_line=True)
        except Exception as exc:  # network and disk errors of the hub client
            ui.notify(f"Pull of {slug} failed: {exc}", type="negative", multi_line=True)
        else:
            ui.notify(f"{slug} is ready.", type="positive")
        finally:
            self.pulls.pop(slug, None)
            self.refresh()

    async def load(self, slug: str) -> None:
        if self.guard.user() is None:
            return
        notice = ui.notification(f"Loading {slug}…", spinner=True, timeout=None)
        try:
            await asyncio.to_thread(self.engine.pipelines.get, slug)
        except EngineError as exc:
            ui.notify(exc.message, type="negative", multi_line=True)
        finally:
            notice.dismiss()
        self.refresh()

    def unload(self, slug: str) -> None:
        if self.guard.user() is None:
            return
        self.engine.pipelines.unload(slug)
        ui.notify(f"Unloaded {slug}.")
        self.refresh()


# -- server settings -------------------------------------------------------------------------------

class ServerTab:
    def __init__(self, engine: ImageEngine, guard: auth.Guard):
        self.engine, self.guard = engine, guard
        runtime = engine.runtime
        with ui.element("div").classes("grid grid-cols-1 lg:grid-cols-2 gap-5 w-full items-start"):
            with card("Storage", icon="inventory_2"):
                with session_scope(engine.db) as session:
                    count, stored = session.exec(select(func.count(), func.coalesce(func.sum(ImageRecord.bytes), 0))
                                                 .where(col(ImageRecord.file_path).is_not(None))).one()
                ui.label(f"{count:,} images, {size_text(int(stored))} in {engine.settings.images_dir}") \
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

    def set(self, key: str, value) -> bool:
        if self.guard.user() is None:
            return False
        try:
            if key == "max_batch_size" and value < 1:
                raise InvalidRequest("the batch size must be at least 1", field=key)
            self.engine.runtime.set(key, value)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return False
        ui.notify("Saved.", type="positive")
        return True

    def _text_model_card(self) -> None:
        config = dict(self.engine.runtime.get("text_model") or {"provider": "builtin"})
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

            def save() -> None:
                chosen = {"provider": provider.value}
                if provider.value == "openai":
                    chosen |= {"base_url": (base_url.value or "").strip() or None,
                               "model": (model.value or "").strip() or None,
                               "api_key": api_key.value or config.get("api_key")}
                elif provider.value == "transformers":
                    chosen["local_path"] = (local_path.value or "").strip() or None
                if self.set("text_model", {k: v for k, v in chosen.items() if v is not None}):
                    config.clear()
                    config.update(chosen)
                    api_key.value = ""

            async def try_it() -> None:
                if self.guard.user() is None:
                    return
                enhanced = await asyncio.to_thread(self.engine.prompt_enhancer().enhance, "a cat on a windowsill")
                result.text = f"{enhanced.source}: {enhanced.prompt}" + (
                    f" (fell back: {enhanced.fallback_reason})" if enhanced.fallback_reason else "")

            with ui.row().classes("gap-2"):
                ui.button("Save", on_click=save).props("unelevated no-caps").mark("save-text-model")
                ui.button("Try it", icon="play_arrow", on_click=try_it).props("outline no-caps") \
                    .mark("try-text-model")

    def _cors_card(self) -> None:
        runtime = self.engine.runtime
        with card("CORS for the public API", icon="public"):
            ui.label("Off: any website may call the API from a browser with a key. Strict: only the origins below.") \
                .classes("text-sm studio-muted")
            strict = ui.switch("Strict mode", value=bool(runtime.get("cors_strict"))).mark("cors-strict")
            origins = ui.textarea("Allowed origins, one per line", value="\n".join(runtime.get("cors_origins")),
                                  placeholder="https://example.com").props("outlined autogrow") \
                .classes("w-full").mark("cors-origins")

            def save() -> None:
                listed = [line.strip().rstrip("/") for line in (origins.value or "").splitlines() if line.strip()]
                bad = [o for o in listed if not ORIGIN.match(o)]
                if bad:
                    ui.notify(f"Not an origin (scheme://host[:port]): {bad[0]}", type="negative")
                    return
                if self.set("cors_origins", listed):
                    self.engine.runtime.set("cors_strict", bool(strict.value))

            ui.button("Save", on_click=save).props("unelevated no-caps").mark("save-cors")
