"""``imagestudio desktop --install``: the app in the Linux applications menu (the freedesktop.org way: a
``.desktop`` entry in ``$XDG_DATA_HOME/applications`` and the icon in the hicolor theme), for this user."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from assets import APP_ID, DESKTOP_ENTRY, ICON_SIZES, ICON_SVG, icon_png


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def launcher() -> str:
    """The command the menu entry runs: this environment's ``imagestudio`` (a venv is not on the menu's PATH)."""
    script = Path(sys.executable).with_name("imagestudio")
    return shlex.quote(str(script)) if script.exists() else f"{shlex.quote(sys.executable)} -m api.cli"


def install(target: Path | None = None) -> list[Path]:
    """Write the entry and the icons under ``target`` (default: the user's data home); returns what was written."""
    if not sys.platform.startswith("linux"):
        raise OSError("--install writes a Linux applications-menu entry; on Windows and macOS, pin the window "
                      "or make a shortcut to `imagestudio desktop`")
    home = target or data_home()
    written = []
    icons = home / "icons" / "hicolor"
    for size in ICON_SIZES:
        path = icons / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(icon_png(size), path)
        written.append(path)
    svg = icons / "scalable" / "apps" / f"{APP_ID}.svg"
    svg.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ICON_SVG, svg)
    written.append(svg)
    entry = home / "applications" / f"{APP_ID}.desktop"
    entry.parent.mkdir(parents=True, exist_ok=True)
    text = DESKTOP_ENTRY.read_text().replace("Exec=imagestudio desktop", f"Exec={launcher()} desktop")
    entry.write_text(text)
    written.append(entry)
    return written
