"""End to end in real headless Chromium: first run, sign in, generate with a tiny model, every page.

Takes a screenshot of every page, into a temporary folder; to refresh the README's pictures, run it with
IMAGESTUDIO_SCREENSHOTS_DIR=docs/screenshots. Needs Debian's chromium and chromium-driver (.ci/run installs
them): skipped where they are missing, a failure in CI.
"""

import io
import re
import time
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import DESKTOP, PHONE, ROOT, headless_chromium, save_png, screenshots_folder
from tests.server_process import Server, server_env

# A real server and Chromium: the database under it is the engine's, run on PostgreSQL by the API tests (CI time).
pytestmark = pytest.mark.sqlite_pass_only

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"

@pytest.fixture
def server(tmp_path, models_dir):
    env = server_env(tmp_path / "data", models_dir, IMAGESTUDIO_STUDIO_ENABLED="true")
    running = Server(env, tmp_path / "server.log").start()
    yield running.base
    running.stop()


@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chromium")
    yield driver
    driver.quit()


class Studio:
    """Small helpers over the driver: find by data-testid, type, click, wait, screenshot."""

    def __init__(self, driver, base: str, screenshots: Path):
        self.driver, self.base, self.screenshots = driver, base, screenshots
        self.viewport(*DESKTOP)

    def wait(self, testid: str, timeout: float = 20, clickable: bool = False):
        condition = EC.element_to_be_clickable if clickable else EC.visibility_of_element_located
        try:
            return self.until(condition((By.CSS_SELECTOR, f'[data-testid="{testid}"]')), timeout)
        except TimeoutException:
            raise AssertionError(f"no visible [data-testid={testid}] on {self.driver.current_url}") from None

    def until(self, condition, timeout: float = 20):
        # A condition that reads an element the page re-renders meanwhile (a new result arriving) sees it stale:
        # that is "not yet", not a failure.
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)

    def open(self, path: str, testid: str = "page-title"):
        self.driver.get(self.base + path)
        return self.wait(testid)

    def field(self, testid: str):
        """The <input>/<textarea> of a Quasar field (which puts data-testid on the native element itself)."""
        element = self.wait(testid)
        return element if element.tag_name in ("input", "textarea") else element.find_element(
            By.CSS_SELECTOR, "input, textarea")

    def type(self, testid: str, text: str) -> None:
        field = self.field(testid)
        field.clear()
        field.send_keys(text)

    def click(self, testid: str) -> None:
        # A script click: a toast passing over the button must not swallow it.
        self.driver.execute_script("arguments[0].click()", self.wait(testid, clickable=True))

    def choose(self, testid: str, option: str) -> None:
        """Open a Quasar select and pick the option with this text."""
        self.click(testid)
        item = self.until(EC.element_to_be_clickable(
            (By.XPATH, f'//div[contains(@class, "q-menu")]//div[contains(@class, "q-item")][.//span[text()="{option}"]]')))
        self.driver.execute_script("arguments[0].click()", item)

    def settle(self, pause: float = 0.25) -> None:
        """Let fonts, images and transitions finish before a screenshot; toasts are left out of the picture."""
        self.driver.execute_script(
            "if (!document.getElementById('no-toasts')) document.head.insertAdjacentHTML('beforeend',"
            " '<style id=\"no-toasts\">.q-notifications { display: none !important; }</style>')")
        self.until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"), 10)
        time.sleep(pause)

    def viewport(self, width: int, height: int) -> None:
        """Exactly this viewport (a window's size would include the browser's own frame)."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def screenshot(self, name: str, size=DESKTOP, full_page: bool = True) -> None:
        self.viewport(*size)
        if full_page:  # grow the viewport to the page's height (within reason) for one uncut picture
            self.settle(pause=0.1)
            height = self.driver.execute_script(
                "return Math.max(...[...document.querySelectorAll('.q-layout')].map(e => e.scrollHeight))")
            self.viewport(size[0], max(size[1], min(int(height), 2400)))
        self.settle()
        save_png(self.driver.get_screenshot_as_png(), self.screenshots / f"{name}.png")
        self.viewport(*size)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    return screenshots_folder(tmp_path)


def test_first_run_sign_in_generate_and_every_page(server, browser, screenshots):
    started = time.time() - 1
    studio = Studio(browser, server, screenshots)

    # A fresh install sends the browser to first run: the admin account is made here.
    studio.open("/", "create-admin")
    assert browser.current_url.endswith("/setup")
    studio.type("name", "Ada Lovelace")
    studio.type("email", EMAIL)
    studio.type("password", PASSWORD)
    studio.type("confirm", PASSWORD)
    studio.screenshot("setup", full_page=False)
    studio.click("create-admin")
    studio.wait("prompt")

    # Sign out, then sign in with email and password.
    studio.click("account-menu")
    studio.click("sign-out")
    studio.wait("sign-in")
    studio.type("email", EMAIL)
    studio.type("password", PASSWORD)
    studio.screenshot("login", full_page=False)
    studio.click("sign-in")

    # Generate with a tiny model and see the image.
    studio.wait("prompt")
    browser.execute_script("arguments[0].click()", studio.wait("builder").find_element(By.CSS_SELECTOR, ".q-item"))
    studio.type("builder-subject", "a lighthouse on a cliff")
    studio.click("enhance")
    studio.until(lambda d: "lighthouse" in studio.field("prompt").get_attribute("value"))
    browser.execute_script("arguments[0].click()", studio.wait("builder").find_element(By.CSS_SELECTOR, ".q-item"))
    studio.click("generate")
    image = studio.wait("result-image", timeout=60).find_element(By.TAG_NAME, "img")
    studio.until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", image))
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    studio.click("generate")  # a second picture for the gallery
    studio.wait("earlier-result", timeout=60)  # the first one moves down to "Earlier"
    studio.screenshot("generate")
    studio.screenshot("generate-phone", size=PHONE)
    studio.click("theme-toggle")  # system -> dark
    studio.until(lambda d: "body--dark" in d.find_element(By.TAG_NAME, "body").get_attribute("class"))
    studio.screenshot("generate-dark")
    studio.click("theme-toggle")  # dark -> light
    studio.click("theme-toggle")  # light -> system

    # An API key, then one API call so usage and the request log have something to show.
    studio.open("/keys")
    studio.type("key-name", "wordpress-site")
    studio.click("create-key")
    key = studio.field("new-key").get_attribute("value")
    assert key.startswith("sk_live_")
    studio.click("close-key")
    studio.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, '[data-testid="new-key"]')))
    response = httpx.post(f"{server}/api/v1/generate", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                          json={"prompt": "a red fox in snow", "model": "tiny-sdxl", "width": 256, "height": 256})
    assert response.status_code == 200, response.text
    studio.screenshot("keys")

    studio.open("/gallery", "gallery-item")
    studio.screenshot("gallery")
    studio.click("gallery-item")
    studio.wait("detail-image")
    studio.screenshot("gallery-detail", full_page=False)

    studio.open("/usage")
    studio.screenshot("usage")
    studio.open("/settings")
    studio.screenshot("settings")
    studio.open("/admin")
    studio.screenshot("admin")
    studio.click("tab-models")
    studio.screenshot("admin-models")

    daily_driver(studio, browser)

    # The README shows these pictures: each one was just taken (the WordPress ones by tests/wordpress, the
    # desktop window's by tests/studio/test_desktop.py).
    readme = (ROOT / "README.md").read_text()
    for name in re.findall(r"docs/screenshots/([\w-]+)\.png", readme):
        if name.startswith("wordpress-") or name == "desktop":
            continue
        assert (screenshots / f"{name}.png").stat().st_mtime >= started, f"{name}.png was not taken"


A1111_INFOTEXT = ("a stone cottage by a lake\nNegative prompt: blurry\n"
                  "Steps: 3, Sampler: Euler a, CFG scale: 6.5, Seed: 4242, Size: 256x256, Model: tiny-sd")


def png_with_infotext() -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_INFOTEXT)
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 60).convert("RGB").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def latest_details(studio: Studio) -> str:
    return studio.wait("result-details").text


def daily_driver(studio: Studio, browser) -> None:
    """Drop a PNG with AUTOMATIC1111's settings and load them, paint a mask and inpaint, upscale, and watch a run of
    one tab from a second tab's queue, cancelling it there."""
    import base64

    studio.open("/", "prompt")
    # A file dropped anywhere on the page (as from the desktop).
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "cottage.png", {type: "image/png"}));
        document.querySelector(".q-page").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    """, base64.b64encode(png_with_infotext()).decode())
    studio.click("load-settings")
    studio.until(lambda d: studio.field("prompt").get_attribute("value") == "a stone cottage by a lake")
    assert studio.field("seed").get_attribute("value") == "4242"

    # Paint over the right half of the dropped picture, and inpaint it.
    studio.click("paint-mask")
    canvas = studio.wait("mask-canvas").find_element(By.TAG_NAME, "img")
    studio.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", canvas))
    width = canvas.size["width"]
    ActionChains(browser).move_to_element_with_offset(canvas, width // 6, 0).click_and_hold() \
        .move_by_offset(width // 8, 10).move_by_offset(width // 8, 10).release().perform()
    studio.until(lambda d: "stroke" in d.page_source and "<polyline" in d.page_source)
    studio.screenshot("generate-inpaint")
    studio.click("generate")
    studio.until(lambda d: latest_details(studio).startswith("inpaint · tiny-sd"), 60)

    studio.click("upscale")  # on the inpainted result
    studio.until(lambda d: latest_details(studio).startswith("upscale · tiny-sd · 512×512"), 90)

    # A long run in this tab, seen (and cancelled) from a second tab's queue.
    # (1024², 50 steps: long enough on any machine to still be running when the other tab's Cancel is pressed.)
    studio.click("clear-edit")
    studio.choose("size", "Custom size")
    studio.type("width", "1024")
    studio.type("height", "1024")
    studio.type("steps", "50")
    studio.click("generate")
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    studio.open("/", "queue")
    studio.until(lambda d: "Step" in studio.wait("queue").text or "Loading" in studio.wait("queue").text, 60)
    studio.screenshot("generate-queue", full_page=False)
    studio.click("queue-cancel")
    browser.close()
    browser.switch_to.window(first)
    studio.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, '[data-testid="cancel"]')), 60)
