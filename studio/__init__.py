"""The NiceGUI studio, mounted on the API's FastAPI app (``ui.run_with``).

It calls the engine directly (not its own HTTP API). Page paths: ``/`` generate, ``/gallery``,
``/keys``, ``/usage``, ``/settings``, ``/admin``, ``/login`` and ``/setup`` (first run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the desktop app's single-instance check imports studio.desktop: it must stay light
    from fastapi import FastAPI

    from engine.service import ImageEngine


def mount_studio(app: FastAPI, engine: ImageEngine) -> None:
    from nicegui import ui
    from nicegui.storage import Storage

    from studio import media, pages

    # Sign-in state (app.storage.user) lives with the rest of the server's data, not in the working directory.
    Storage.path = (engine.settings.data_dir / "studio-sessions").resolve()
    pages.register(engine)
    media.register(engine)
    ui.run_with(app, mount_path="/", title="Image Studio", dark=None, favicon=_FAVICON,
                storage_secret=engine.keys.studio_cookies, show_welcome_message=False,
                # A browser-session cookie (no Max-Age): closing the browser signs out.
                session_middleware_kwargs={"max_age": None, "same_site": "lax",
                                           "session_cookie": "imagestudio_session"})


_FAVICON = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><defs><linearGradient id='g' x1='0' y1='0'"
            " x2='1' y2='1'><stop offset='0' stop-color='#8b5cf6'/><stop offset='1' stop-color='#ec4899'/>"
            "</linearGradient></defs><rect width='32' height='32' rx='8' fill='url(#g)'/><path d='M9 22l5-7 4 5 3-4"
            " 4 6z' fill='white'/><circle cx='21' cy='11' r='2.5' fill='white'/></svg>")
