"""Files the app ships beside its code: the app icon (``icon.svg`` and its PNGs in ``icons/``), the Linux
``imagestudio.desktop`` entry (``imagestudio desktop --install`` puts both in the applications menu), and the
WordPress plugin (``wordpress/``)."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
ICON_SVG = ASSETS / "icon.svg"
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
DESKTOP_ENTRY = ASSETS / "imagestudio.desktop"
APP_ID = "imagestudio"  # the icon's and the .desktop file's name


def icon_png(size: int) -> Path:
    return ASSETS / "icons" / f"{size}.png"
