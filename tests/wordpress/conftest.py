"""The WordPress plugin's test bed, built once per run: MariaDB, a throwaway WordPress site with the plugin active
(served by php -S), and a real Image Studio server with tiny models that delivers its webhooks to that site.

Needs Debian's wordpress, mariadb-server and php-cli with mysqli, curl, gd, xml and mbstring (.ci/run installs
them): the tests are skipped where they are missing, and fail in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.server_process import Server, create_key, server_env
from tests.support import require
from tests.wordpress.site import PLUGIN_SOURCE, MariaDB, WordPressSite, tail, tools_missing


@pytest.fixture(scope="session")
def wordpress_tools() -> None:
    missing = tools_missing()
    require(not missing, "Debian's " + ", ".join(missing or ["wordpress"]))


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory, wordpress_tools) -> Iterator[MariaDB]:
    db = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def site(tmp_path_factory, mariadb) -> Iterator[WordPressSite]:
    """WordPress installed (admin, an author, a subscriber), the plugin active, served at ``site.url``."""
    assert (PLUGIN_SOURCE / "image-studio.php").is_file(), f"no plugin at {PLUGIN_SOURCE}"
    wordpress = WordPressSite(tmp_path_factory.mktemp("wordpress"), mariadb).build()
    try:
        installed = wordpress.install()
        assert installed == {"active": True, "author_can_upload": True, "subscriber_can_upload": False}, installed
        wordpress.serve()
        yield wordpress
    finally:
        wordpress.stop()


@dataclass
class ImageStudio:
    server: Server
    key: str
    models: Path  # the server's models folder: links to the shared tiny models

    @property
    def base(self) -> str:
        return self.server.base

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The server's API with the site's key."""
        return httpx.request(method, f"{self.base}/api/v1{path}", timeout=30,
                             headers={"Authorization": f"Bearer {self.key}"}, **kwargs)

    def enable_background_removal(self, models_dir: Path) -> None:
        """Give the server rembg's model file (the tiny stand-in) that it started without."""
        if not (self.models / "rembg").exists():
            (self.models / "rembg").symlink_to(models_dir / "rembg", target_is_directory=True)

    def log(self) -> str:
        return tail(self.server.log)


@pytest.fixture(scope="session")
def imagestudio(tmp_path_factory, models_dir) -> Iterator[ImageStudio]:
    """A real server, allowed to call private addresses (an intranet install: the site is on 127.0.0.1), with a
    Pro key for the site. Its models folder has every tiny model but not rembg's file: background removal is not
    set up until a test calls ``enable_background_removal``."""
    folder = tmp_path_factory.mktemp("imagestudio")
    models = folder / "models"
    models.mkdir()
    for entry in models_dir.iterdir():
        if entry.name != "rembg":
            (models / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    env = server_env(folder / "data", models, IMAGESTUDIO_ALLOW_PRIVATE_FETCH="true")
    key = create_key(env, "wp@example.com", plan="pro")
    server = Server(env, folder / "server.log").start()
    yield ImageStudio(server, key, models)
    server.stop()


@pytest.fixture(scope="session")
def configured(site, imagestudio) -> WordPressSite:
    """The plugin set up with the server's URL and the key, as an admin does on Settings → Image Studio."""
    status, data = site.rest("POST", "/image-studio/v1/settings", {
        "server_url": imagestudio.base, "api_key": imagestudio.key, "default_model": "tiny-sd",
        "default_size": "256x256"})
    assert status == 200, (status, data)
    return site


@pytest.fixture(autouse=True)
def no_wordpress_errors(request) -> Iterator[None]:
    """A test that used the site fails on any PHP warning, notice or fatal error WordPress logged meanwhile
    (also from requests php -S served: the webhook, the browser's pages)."""
    if "site" not in request.fixturenames:
        yield
        return
    site: WordPressSite = request.getfixturevalue("site")
    site.new_log_errors()  # what came before this test is not its doing (and failed the test that caused it)
    yield
    errors = site.new_log_errors()
    if errors:
        pytest.fail("WordPress logged errors:\n" + "\n".join(errors) + "\n" + site.logs(), pytrace=False)
