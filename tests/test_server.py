"""The real server in a subprocess: studio on /, API on /api/v1, OpenAPI on /docs (the README's curl)."""

import subprocess
import sys

import httpx
import pytest

from tests.server_process import Server, server_env


@pytest.fixture
def server(settings, tmp_path):
    env = server_env(settings.data_dir, settings.models_dir, IMAGESTUDIO_STUDIO_ENABLED="true")
    # The README's way to the first key.
    key = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--name", "readme"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    running = Server(env, tmp_path / "server.log").start()
    yield running.base, key
    running.stop()


def test_one_process_serves_studio_api_and_docs(server):
    base, key = server
    studio = httpx.get(f"{base}/")
    assert studio.status_code == 200 and "<title>Image Studio</title>" in studio.text
    assert httpx.get(f"{base}/docs").status_code == 200
    # The README's curl example, with a tiny model.
    response = httpx.post(f"{base}/api/v1/generate", timeout=60, headers={"Authorization": f"Bearer {key}"},
                          json={"prompt": "a lighthouse at dusk", "model": "tiny-sd", "width": 256, "height": 256})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    # The box's first owner is its admin on the Studio plan: the image is stored and linked, not inlined.
    assert data["storage"]["plan_slug"] == "owner" and data["storage"]["stored"] is True
    assert data["image"].startswith(f"{base}/api/v1/images/{data['id']}")
    assert httpx.get(data["image"]).content.startswith(b"\x89PNG")
    assert httpx.get(f"{base}/api/v1/nope").json()["error"]["code"] == "not_found"
