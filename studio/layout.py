"""The shared page frame: header, navigation drawer, dark/light mode and the theme."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import app, ui

from engine.data.tables import User
from studio import auth

NAV = (  # (path, label, icon, admin only)
    ("/", "Generate", "auto_awesome", False),
    ("/gallery", "Gallery", "photo_library", False),
    ("/keys", "API keys", "key", False),
    ("/usage", "Usage", "insights", False),
    ("/settings", "Settings", "tune", False),
    ("/admin", "Admin", "admin_panel_settings", True),
)

DARK_KEY = "dark"  # None: follow the system; True/False: the user's choice

THEME_CSS = """
<style>
  :root { --studio-bg: #f6f5fb; --studio-surface: #ffffff; --studio-border: #e7e5f0;
          --studio-muted: #6b6880; }
  body.body--dark { --studio-bg: #0e0d14; --studio-surface: #17161f; --studio-border: #2a2836;
                    --studio-muted: #a19eb5; }
  body { background: var(--studio-bg);
         font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
  .studio-header { background: var(--studio-surface) !important; color: inherit !important;
                   border-bottom: 1px solid var(--studio-border); }
  .studio-drawer { background: var(--studio-surface) !important; border-right: 1px solid var(--studio-border); }
  .studio-card { background: var(--studio-surface); border: 1px solid var(--studio-border); border-radius: 16px;
                 box-shadow: 0 1px 2px rgba(16, 12, 40, .04); }
  body.body--dark .studio-card { box-shadow: none; }
  .studio-muted { color: var(--studio-muted); }
  .studio-logo { width: 30px; height: 30px; border-radius: 9px; background: linear-gradient(135deg, #8b5cf6, #ec4899);
                 display: flex; align-items: center; justify-content: center; color: white; }
  .studio-nav .q-item { border-radius: 10px; margin: 2px 10px; min-height: 42px; }
  .studio-nav .q-item.studio-active { background: rgba(124, 58, 237, .12); color: #7c3aed; font-weight: 600; }
  body.body--dark .studio-nav .q-item.studio-active { background: rgba(167, 139, 250, .16); color: #c4b5fd; }
  .studio-checker { background-color: #fff;
    background-image: linear-gradient(45deg, #ddd 25%, transparent 25%),
      linear-gradient(-45deg, #ddd 25%, transparent 25%), linear-gradient(45deg, transparent 75%, #ddd 75%),
      linear-gradient(-45deg, transparent 75%, #ddd 75%);
    background-size: 16px 16px; background-position: 0 0, 0 8px, 8px -8px, -8px 0; }
  .studio-thumb img { transition: transform .2s ease; }
  .studio-thumb:hover img { transform: scale(1.03); }
  .studio-avatar { width: 34px; height: 34px; border-radius: 50%; display: flex; align-items: center;
                   justify-content: center; color: white; font-weight: 600; font-size: 15px; flex-shrink: 0;
                   background: linear-gradient(135deg, #8b5cf6, #ec4899); }
  .studio-auth-bg { background: radial-gradient(circle at 20% 10%, rgba(139, 92, 246, .14), transparent 45%),
                                radial-gradient(circle at 85% 90%, rgba(236, 72, 153, .12), transparent 45%); }
  .studio-stat { font-size: 1.75rem; font-weight: 700; line-height: 1.1; }
  .studio-code pre { white-space: pre-wrap; word-break: break-all; }
  .q-field--outlined .q-field__control { border-radius: 10px; }
  /* Toasts at the top, under the header, never over the Generate button at the bottom of the form; focus rings
     visible on every control a keyboard reaches. */
  .q-notifications__list--bottom { top: 64px; bottom: auto; flex-direction: column; }
  .q-notifications__list--bottom .q-notification { max-width: min(560px, 92vw); }
  :focus-visible { outline: 2px solid #7c3aed; outline-offset: 2px; }
  body.studio-dropping .q-page { outline: 3px dashed #7c3aed; outline-offset: -12px; }
</style>
"""


def apply_theme() -> None:
    ui.colors(primary="#7c3aed", secondary="#ec4899", accent="#06b6d4", positive="#16a34a", negative="#dc2626",
              warning="#d97706", info="#2563eb")
    ui.add_head_html(THEME_CSS)
    ui.query(".nicegui-content").classes("p-0")


def dark_mode_toggle() -> None:
    """Dark mode follows the system until the user picks; the choice survives sign-in and sign-out."""
    dark = ui.dark_mode(app.storage.user.get(DARK_KEY))
    icons = {None: "brightness_auto", True: "dark_mode", False: "light_mode"}
    tips = {None: "Theme: system", True: "Theme: dark", False: "Theme: light"}

    def cycle() -> None:
        following = {None: True, True: False, False: None}[dark.value]
        dark.value = following
        app.storage.user[DARK_KEY] = following
        button.props(f"icon={icons[following]}")
        button.tooltip(tips[following])

    button = ui.button(icon=icons[dark.value], on_click=cycle).props('flat round aria-label="Theme"').mark("theme-toggle") \
        .props("data-testid=theme-toggle")
    button.tooltip(tips[dark.value])


def avatar(user: User) -> None:
    ui.label((user.name or user.email)[:1].upper()).classes("studio-avatar")


def logo(size: str = "text-lg") -> None:
    with ui.row().classes("items-center gap-2 no-wrap"):
        with ui.element("div").classes("studio-logo"):
            ui.icon("auto_awesome", size="18px")
        ui.label("Image Studio").classes(f"{size} font-bold tracking-tight")


@contextmanager
def frame(user: User, path: str, title: str, subtitle: str = "") -> Iterator[None]:
    """Header, navigation and a centered content column; the page fills the ``with`` block."""
    apply_theme()
    drawer = ui.left_drawer(value=None).classes("studio-drawer p-0").props("width=232 breakpoint=1024")
    with drawer:
        with ui.column().classes("w-full gap-0 pt-4 studio-nav"):
            with ui.list().classes("w-full"):
                for target, label, icon, admin_only in NAV:
                    if admin_only and not user.is_admin:
                        continue
                    item = ui.item(on_click=lambda t=target: ui.navigate.to(t)).props("clickable")
                    item.mark(f"nav-{target.strip('/') or 'generate'}")
                    if target == path:
                        item.classes("studio-active")
                    with item:
                        with ui.item_section().props("avatar").classes("min-w-0 pr-3"):
                            ui.icon(icon, size="20px")
                        ui.item_section(label)
    with ui.header().classes("studio-header items-center px-3 py-2 gap-1").props("height-hint=56"):
        ui.button(icon="menu", on_click=drawer.toggle).props('flat round aria-label="Menu"').classes("lg:hidden").mark("menu")
        logo()
        ui.space()
        dark_mode_toggle()
        with ui.button().props('flat round aria-label="Account"').mark("account-menu").props("data-testid=account-menu"):
            avatar(user)
            with ui.menu().classes("min-w-56"):
                with ui.column().classes("px-4 py-3 gap-0"):
                    ui.label(user.name or user.email.split("@")[0]).classes("font-semibold")
                    ui.label(user.email).classes("text-sm studio-muted")
                ui.separator()
                ui.menu_item("Settings", on_click=lambda: ui.navigate.to("/settings"))
                ui.menu_item("Sign out", on_click=_sign_out).mark("sign-out").props("data-testid=sign-out")
    with ui.column().classes("w-full max-w-6xl mx-auto px-3 sm:px-6 py-5 sm:py-8 gap-5"):
        with ui.column().classes("gap-0"):
            ui.label(title).classes("text-2xl sm:text-3xl font-bold tracking-tight") \
                .mark("page-title").props("data-testid=page-title")
            if subtitle:
                ui.label(subtitle).classes("studio-muted")
        yield


def _sign_out() -> None:
    auth.sign_out()
    ui.navigate.to("/login")


@contextmanager
def card(title: str | None = None, *, icon: str | None = None, classes: str = "") -> Iterator[ui.column]:
    """A surface with an optional heading."""
    with ui.column().classes(f"studio-card w-full p-4 sm:p-5 gap-3 {classes}") as column:
        if title:
            with ui.row().classes("items-center gap-2"):
                if icon:
                    ui.icon(icon, size="20px").classes("text-primary")
                ui.label(title).classes("text-base font-semibold")
        yield column


@contextmanager
def centered_page() -> Iterator[None]:
    """Sign-in and first-run: the form in a card on a plain background."""
    apply_theme()
    with ui.column().classes("w-full min-h-screen items-center justify-center p-4 studio-auth-bg"):
        with ui.column().classes("studio-card w-full max-w-sm p-6 sm:p-8 gap-4"):
            logo("text-xl")
            yield
        with ui.row().classes("pt-2"):
            dark_mode_toggle()
