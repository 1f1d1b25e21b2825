"""The real server in a subprocess: studio on /, API on /api/v1, OpenAPI on /docs (the README's curl)."""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(settings):
    env = os.environ | {"IMAGESTUDIO_DATA_DIR": str(settings.data_dir),
                        "IMAGESTUDIO_MODELS_PATH": str(settings.models_dir), "IMAGESTUDIO_DEVICE": "cpu",
                        "HF_HUB_OFFLINE": "1"}
    key = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--name", "readme"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not start:\n" + proc.stdout.read())
    yield base, key
    proc.terminate()
    proc.wait(10)


def test_one_process_serves_studio_api_and_docs(server):
    base, key = server
    studio = httpx.get(f"{base}/")
    assert studio.status_code == 200 and "<title>Image Studio</title>" in studio.text
    assert httpx.get(f"{base}/docs").status_code == 200
    # The README's curl example, with a tiny model.
    response = httpx.post(f"{base}/api/v1/generate", timeout=60, headers={"Authorization": f"Bearer {key}"},
                          json={"prompt": "a lighthouse at dusk", "model": "tiny-sd", "width": 256, "height": 256})
    assert response.status_code == 200 and response.json()["data"]["image"].startswith("data:image/png;base64,")
    assert httpx.get(f"{base}/api/v1/nope").json()["error"]["code"] == "not_found"
