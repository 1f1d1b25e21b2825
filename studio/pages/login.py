"""Sign in (/login) and first run (/setup): the first admin account is created in the browser."""

from __future__ import annotations

from nicegui import ui

from engine.errors import EngineError
from engine.service import ImageEngine
from studio import auth
from studio.layout import centered_page
from studio.offload import off_loop
from studio.pages import first_run


def register(engine: ImageEngine) -> None:
    @ui.page("/login", title="Sign in · Image Studio")
    async def login_page(next: str = "/"):  # noqa: A002  (the query parameter's name)
        if await off_loop(engine.accounts.needs_first_run):
            ui.navigate.to("/setup")
            return
        target = auth.safe_next(next)
        if await auth.signed_in_user(engine) is not None:
            ui.navigate.to(target)
            return
        ip = ui.context.client.ip or "?"

        async def submit() -> None:
            try:
                user = await off_loop(engine.sign_in, email.value or "", password.value or "", ip)
            except EngineError as exc:
                error.text = exc.message
                error.visible = True
                password.value = ""
                return
            auth.sign_in(user)
            ui.navigate.to(target)

        with centered_page():
            with ui.column().classes("gap-0"):
                ui.label("Welcome back").classes("text-xl font-semibold")
                ui.label("Sign in to your studio.").classes("studio-muted text-sm")
            email = ui.input("Email").props("outlined type=email autocomplete=username autofocus") \
                .classes("w-full").mark("email").props("data-testid=email")
            password = ui.input("Password", password=True, password_toggle_button=True) \
                .props("outlined autocomplete=current-password").classes("w-full") \
                .mark("password").props("data-testid=password")
            error = ui.label().classes("text-negative text-sm").mark("login-error")
            error.visible = False
            ui.button("Sign in", on_click=submit).props("unelevated no-caps").classes("w-full") \
                .mark("sign-in").props("data-testid=sign-in")
            password.on("keydown.enter", submit)

    @ui.page("/setup", title="Set up · Image Studio")
    async def setup_page():
        if not await off_loop(engine.accounts.needs_first_run):
            ui.navigate.to("/login")
            return

        async def submit() -> None:
            if (password.value or "") != (confirm.value or ""):
                error.text, error.visible = "The passwords don't match.", True
                return
            try:
                user = await off_loop(engine.accounts.create_first_admin, email.value or "", password.value or "",
                                      (name.value or "").strip())
            except EngineError as exc:
                error.text, error.visible = exc.message, True
                return
            auth.sign_in(user)
            ui.notify("Your admin account is ready.", type="positive")
            # Next, a model that runs well here, unless the default one already does.
            ui.navigate.to("/" if await off_loop(first_run.default_is_ready, engine) else first_run.PATH)

        with centered_page():
            with ui.column().classes("gap-0"):
                ui.label("Set up your studio").classes("text-xl font-semibold")
                ui.label("Create the administrator account. You can add more people later in Admin.") \
                    .classes("studio-muted text-sm")
            name = ui.input("Your name").props("outlined autocomplete=name").classes("w-full") \
                .mark("name").props("data-testid=name")
            email = ui.input("Email").props("outlined type=email autocomplete=username").classes("w-full") \
                .mark("email").props("data-testid=email")
            password = ui.input("Password (8+ characters)", password=True, password_toggle_button=True) \
                .props("outlined autocomplete=new-password").classes("w-full") \
                .mark("password").props("data-testid=password")
            confirm = ui.input("Repeat password", password=True).props("outlined autocomplete=new-password") \
                .classes("w-full").mark("confirm").props("data-testid=confirm")
            error = ui.label().classes("text-negative text-sm").mark("setup-error")
            error.visible = False
            ui.button("Create admin account", on_click=submit).props("unelevated no-caps").classes("w-full") \
                .mark("create-admin").props("data-testid=create-admin")
