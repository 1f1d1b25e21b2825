"""The seed documents' code examples (curl, browser JavaScript `fetch`, Python `requests`, WordPress PHP), run
unmodified against a running server: only the base URL, the key and (through a model alias on this test box) the
model are substituted. Each snippet is stored as it stands in the document, and checked to stand there."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.conftest import TEST_BOX_ALIASES
from tests.server_process import Server, create_key, server_env
from tests.support import require

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = Path(__file__).with_name("snippets")
SEEDS = ROOT / "docs" / "seeds"
DOCUMENT_URLS = ("https://imageapi.org", "https://app.apimage.org")
DOCUMENT_KEYS = ("YOUR_API_KEY", "sk_your_api_key", "sk_your_key")


def snippet(name: str) -> str:
    return (SNIPPETS / name).read_text()


def substituted(text: str, base: str, key: str) -> str:
    for url in DOCUMENT_URLS:
        text = text.replace(url, base)
    for placeholder in DOCUMENT_KEYS:
        text = text.replace(placeholder, key)
    return text


def run(command: list[str], **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    folder = tmp_path_factory.mktemp("snippet-server")
    env = server_env(folder / "data", models_dir, IMAGESTUDIO_MODEL_ALIASES=json.dumps(TEST_BOX_ALIASES))
    running = Server(env, folder / "server.log").start()
    yield running.base, create_key(env, "snippets@example.com", plan="pro")
    running.stop()


@pytest.mark.parametrize("name", sorted(p.name for p in SNIPPETS.iterdir() if p.name != "wp_http_stand_in.php"))
def test_each_snippet_stands_in_its_document(name):
    document = "imageapi-rest-api.txt" if name.startswith("imageapi") else "image-studio-api.txt"
    assert snippet(name).rstrip("\n") in (SEEDS / document).read_text()


def test_the_seed_copies_are_the_contract_in_shared():
    """docs/seeds holds the documents of ../shared/seeds/ (the project's contract) word for word."""
    shared = ROOT.parent / "shared" / "seeds"
    if not shared.is_dir():  # a checkout without the project's shared folder beside it: nothing to compare with
        pytest.skip(f"no {shared} beside this checkout")
    for document in shared.glob("*.txt"):
        assert (SEEDS / document.name).read_text() == document.read_text(), document.name


def curl_json(server, name: str) -> dict:
    require(shutil.which("curl") is not None, "curl")
    base, key = server
    return json.loads(run(["bash", "-c", substituted(snippet(name), base, key)]))


@pytest.mark.parametrize("name", ["imageapi-quickstart.sh", "imageapi-example.sh"])
def test_curl_generate(server, name):
    data = curl_json(server, name)["data"]
    assert data["image"].startswith(server[0]) and isinstance(data["seed"], int) and data["model"] == "tiny-sd"
    assert data["storage"]["stored"] is True and data["storage"]["plan"].endswith("cloud storage")


def test_curl_batch(server):
    results = curl_json(server, "imageapi-batch.sh")["data"]["results"]
    assert [item["success"] for item in results] == [True, True]
    assert all(item["image"] and item["seed"] is not None and item["model"] and item["storage"] for item in results)


def test_curl_prompt_tools_models_usage_health(server):
    assert "anime" in curl_json(server, "imageapi-enhance.sh")["data"]["prompt"]
    assert "fox in a scarf" in curl_json(server, "imageapi-build.sh")["data"]["prompt"]
    assert {m["slug"] for m in curl_json(server, "imageapi-models.sh")["data"]} >= {"flux-schnell", "phoenix-1"}
    usage = curl_json(server, "imageapi-usage.sh")["data"]
    assert usage["usage"]["today"]["requestCount"] >= 0 and usage["plan"]["slug"] == "pro"
    assert curl_json(server, "imageapi-health.sh")["status"] == "healthy"


def test_curl_image_studio(server):
    payload = curl_json(server, "studio-curl.sh")
    assert payload["image_url"].startswith(server[0]) and payload["data"]["requested_model"] == "flux-2-pro"


def test_enhance_prompt_body(server):
    import httpx

    base, key = server
    response = httpx.post(f"{base}/api/v1/image-studio", content=snippet("studio-enhance-prompt.json"),
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 200 and response.json()["data"]["prompt"].startswith("a dog on a beach")


def node(server, source: str, module: bool) -> str:
    require(shutil.which("node") is not None, "node (Node.js 18 or newer, for fetch)")
    return run(["node", *(["--input-type=module"] if module else []), "-e", substituted(source, *server)])


def test_browser_fetch_generate(server):
    out = node(server, snippet("imageapi-fetch.mjs") + "\nconsole.log(JSON.stringify(data));\n", module=True)
    data = json.loads(out)["data"]
    assert data["image"].startswith(server[0]) and data["model"] == "tiny-sd"


def test_browser_fetch_image_studio(server):
    assert node(server, snippet("studio-fetch.js"), module=False).strip().startswith(server[0] + "/api/v1/images/")


def test_python_requests_image_studio(server):
    require(importlib.util.find_spec("requests") is not None, "the requests package (the test extra)")
    out = run([sys.executable, "-c", substituted(snippet("studio-requests.py"), *server)])
    assert out.strip().startswith(server[0] + "/api/v1/images/")


def test_wordpress_php(server, tmp_path):
    require(shutil.which("php") is not None, "php (Debian's php-cli)")
    base, key = server
    script = tmp_path / "snippet.php"
    script.write_text(
        f"<?php require {json.dumps(str(SNIPPETS / 'wp_http_stand_in.php'))};\n"
        f"define('IMAGEAPI_KEY', {json.dumps(key)}); ?>\n"
        + substituted(snippet("imageapi-wordpress.php"), base, key)
        + "\necho json_encode(array('code' => $code, 'image' => $body['data']['image']));\n")
    out = json.loads(run(["php", str(script)]))
    assert out["code"] == 200 and out["image"].startswith(base + "/api/v1/images/")
