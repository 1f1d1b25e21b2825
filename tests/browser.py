"""Headless Chromium for the end-to-end tests (the studio's and the WordPress plugin's): Debian's chromium and
chromium-driver, which .ci/run installs; a test without them is skipped here and fails in CI."""

import io
import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support import require

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DESKTOP, PHONE = (1280, 860), (390, 844)
ROOT = Path(__file__).resolve().parents[1]


def headless_chromium(profile: Path, *, console_log: bool = False) -> webdriver.Chrome:
    """A fresh browser with its own profile folder, at the desktop size (``console_log``: the page's console
    messages kept, for ``driver.get_log("browser")``)."""
    require(os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK), "Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
                 f"--window-size={DESKTOP[0]},{DESKTOP[1]}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def screenshots_folder(tmp_path: Path) -> Path:
    """Where screenshots go: a temporary folder, or IMAGESTUDIO_SCREENSHOTS_DIR (docs/screenshots refreshes the
    README's pictures)."""
    folder = os.environ.get("IMAGESTUDIO_SCREENSHOTS_DIR")
    return (ROOT / folder) if folder else tmp_path / "screenshots"


def save_png(png: bytes, path: Path) -> None:
    """A palette PNG: UI screenshots stay sharp at a fraction of the size."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
            .save(path, optimize=True)
