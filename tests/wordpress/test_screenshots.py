"""The plugin in a real browser (headless Chromium, like tests/studio/test_browser_e2e.py): Settings → Image Studio
with "Test connection" pressed, and the block editor with the Image Studio block inserted from the inserter, then
generating two images and picking one.

Screenshots go to a temporary folder; to refresh the README's pictures, run it with
IMAGESTUDIO_SCREENSHOTS_DIR=docs/screenshots (wordpress-settings.png, wordpress-block.png).
"""

import re
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import DESKTOP, headless_chromium, save_png, screenshots_folder
from tests.wordpress.site import ADMIN, PASSWORD

pytestmark = pytest.mark.sqlite_pass_only  # the Image Studio server picks its database (SQLite in its data dir)

@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chromium", console_log=True)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": DESKTOP[0], "height": DESKTOP[1], "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    return screenshots_folder(tmp_path)


def until(driver, condition, what: str, timeout: float = 30):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what}: not within {timeout} s on {driver.current_url}\n"
                             f"{browser_errors(driver, everything=True)}") from None


def browser_errors(driver, everything: bool = False) -> list[str]:
    """The console's errors (the plugin's scripts throwing, a failed request to the site), but not another
    host's resources failing to load (the site is offline)."""
    return [entry["message"] for entry in driver.get_log("browser") if everything or (
        entry["level"] == "SEVERE" and not re.match(r"https?://(?!127\.0\.0\.1[:/])", entry["message"]))]


def screenshot(driver, path: Path, max_height: int = 1600) -> None:
    """The page at the desktop width, as tall as its content (within reason)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": DESKTOP[0], "height": max(DESKTOP[1], min(int(height), max_height)), "deviceScaleFactor": 1,
        "mobile": False})
    until(driver, lambda d: d.execute_script(
        "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"), "images")
    time.sleep(0.3)  # transitions
    save_png(driver.get_screenshot_as_png(), path)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": DESKTOP[0], "height": DESKTOP[1], "deviceScaleFactor": 1, "mobile": False})


def log_in(driver, site) -> None:
    driver.get(site.url + "/wp-login.php")
    until(driver, EC.visibility_of_element_located((By.ID, "user_login")), "the login form")
    driver.find_element(By.ID, "user_login").send_keys(ADMIN)
    driver.find_element(By.ID, "user_pass").send_keys(PASSWORD)
    driver.find_element(By.ID, "wp-submit").click()
    until(driver, lambda d: "/wp-admin/" in d.current_url, "signed in to wp-admin")


def test_settings_page_and_block_editor_screenshots(configured, imagestudio, browser, screenshots):
    site, driver = configured, browser
    log_in(driver, site)

    # Settings → Image Studio: Test connection answers from the server (through the plugin's REST route).
    driver.get(site.url + "/wp-admin/options-general.php?page=image-studio")
    button = until(driver, EC.element_to_be_clickable((By.ID, "image-studio-test")), "the Test connection button")
    assert imagestudio.key not in driver.page_source
    assert driver.find_element(By.ID, "image_studio_server_url").get_attribute("value") == imagestudio.base
    button.click()
    result = until(driver, lambda d: d.find_element(By.ID, "image-studio-test-result").text.startswith("Connected")
                   and d.find_element(By.ID, "image-studio-test-result"), "the connection test's result")
    assert "tiny-sd" in result.text and result.find_elements(By.CSS_SELECTOR, ".notice-success"), result.text
    screenshot(driver, screenshots / "wordpress-settings.png")

    # A new post in the block editor: the welcome guide closed, the block found with the inserter's search.
    driver.get(site.url + "/wp-admin/post-new.php")
    until(driver, lambda d: d.execute_script(
        "return !!(window.wp && wp.data && wp.blocks && wp.blocks.getBlockType('image-studio/image')"
        " && wp.data.select('core/edit-post'))"), "the block editor with the Image Studio block registered")
    driver.execute_script(
        "if (wp.data.select('core/edit-post').isFeatureActive('welcomeGuide'))"
        " wp.data.dispatch('core/edit-post').toggleFeature('welcomeGuide');"
        "wp.data.dispatch('core/editor').editPost({title: 'Foxes in winter'});")
    until(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, ".edit-post-welcome-guide"), "no welcome guide")
    until(driver, EC.element_to_be_clickable((By.CSS_SELECTOR, ".edit-post-header-toolbar__inserter-toggle")),
          "the inserter toggle").click()
    search = until(driver, EC.visibility_of_element_located(
        (By.CSS_SELECTOR, ".block-editor-inserter__search input")), "the inserter's search")
    search.send_keys("Image Studio")
    until(driver, EC.element_to_be_clickable((By.CSS_SELECTOR, ".editor-block-list-item-image-studio-image")),
          "Image Studio among the inserter's results").click()
    block = until(driver, EC.visibility_of_element_located((By.CSS_SELECTOR, ".image-studio-block")),
                  "the inserted Image Studio block")
    assert driver.execute_script(
        "return wp.data.select('core/block-editor').getBlocks().map(b => b.name)") == ["image-studio/image"]
    # The block asked the plugin for the models: the picker lists the server's tiny-sd.
    until(driver, lambda d: "tiny-sd" in block.get_attribute("innerHTML"), "tiny-sd in the block's model picker")
    prompt = block.find_element(By.CSS_SELECTOR, "textarea")
    prompt.send_keys("a red fox in the snow, watercolor")
    if driver.find_elements(By.CSS_SELECTOR, ".edit-post-header-toolbar__inserter-toggle.is-pressed"):
        driver.find_element(By.CSS_SELECTOR, ".edit-post-header-toolbar__inserter-toggle").click()
    screenshot(driver, screenshots / "wordpress-block.png")

    # Generate (two images, the block's default) and wait for both to be in the media library and shown to pick.
    block.find_element(By.XPATH, ".//button[normalize-space()='Generate']").click()
    until(driver, lambda d: d.execute_script(
        "const imgs = [...document.querySelectorAll('.image-studio-block .image-studio-result img')];"
        " return document.querySelector('.image-studio-block .components-notice.is-error')"
        " || (imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth === 256));"),
        "two generated images to pick from (or an error)", timeout=120)
    errors = [notice.text for notice in block.find_elements(By.CSS_SELECTOR, ".components-notice.is-error")]
    assert errors == [], f"the block shows errors: {errors}\n{site.logs()}"

    # Picking one makes the block that image (an attachment of the media library).
    block.find_element(By.CSS_SELECTOR, ".image-studio-result").click()
    until(driver, lambda d: d.execute_script(
        "const b = wp.data.select('core/block-editor').getBlocks()[0]; return b.attributes.id > 0"
        " && !!document.querySelector('figure.image-studio-block img')"), "the picked image in the block")
    attributes = driver.execute_script("return wp.data.select('core/block-editor').getBlocks()[0].attributes")
    assert attributes["alt"] == "a red fox in the snow, watercolor" and attributes["url"].startswith(site.url)

    assert browser_errors(driver) == []
