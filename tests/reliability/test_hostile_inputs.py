"""Hostile input over HTTP: bombs and huge images, wrong formats, broken data, oversized bodies, long prompts,
odd unicode, out-of-range numbers, wrong types and SSRF through input_image URLs. Always a 4xx with the
envelope and a request id (or a normal answer), never a 500, never a fetch of a private address."""

import base64
import functools
import io
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import api.routes.image_studio
from api.app import create_app
from engine.generation.inputs import InputLimits
from engine.tools.prompts import MAX_PROMPT_CHARS
from tests.api.helpers import SMALL, set_plan, set_workspace


@pytest.fixture
def headers(user_and_key, engine, auth):
    """A key on a roomy plan, so many requests in one test are never rate limited."""
    set_plan(engine, user_and_key[0])
    set_workspace(engine, user_and_key[0], credits=10_000)
    return auth


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


PNG = encode(Image.new("RGB", (64, 48), (200, 30, 30)), "PNG")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims width x height pixels."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def edit(client, headers, input_image, **extra):
    body = {"action": "edit", "prompt": "make it blue", "model": "tiny-sd", "input_image": input_image,
            "aspect_ratio": "1:1"} | extra
    return client.post("/api/v1/image-studio", json=body, headers=headers)


def refused(response, status: int, code: str | None = None, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["request_id"] == response.headers["x-request-id"]
    if code:
        assert body["error"]["code"] == code, body
    if field:
        assert body["error"]["field"] == field, body
    return body["error"]


# -- images -------------------------------------------------------------------------------------------

def test_decompression_bomb_is_413_without_decoding(client, headers):
    bomb = bomb_png(60_000, 60_000)  # 3.6 gigapixels in a few dozen bytes
    started = time.monotonic()
    error = refused(edit(client, headers, data_url(bomb)), 413, "payload_too_large", "input_image")
    assert "pixels" in error["message"] and time.monotonic() - started < 5


def test_the_pixel_limit_is_below_pillows_and_an_error(client, headers, monkeypatch):
    # 5000x5000 is under Pillow's own threshold (where it only warns) but over the server's 4096x4096.
    error = refused(edit(client, headers, data_url(bomb_png(5000, 5000))), 413, "payload_too_large", "input_image")
    assert "5000x5000" in error["message"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # other code switching Pillow's check off changes nothing
    refused(edit(client, headers, data_url(bomb_png(5000, 5000))), 413, "payload_too_large", "input_image")


def test_lowered_pixel_limit_is_enforced_as_an_error(client, headers, monkeypatch):
    monkeypatch.setattr(api.routes.image_studio, "InputLimits", functools.partial(InputLimits, max_pixels=64 * 48))
    assert edit(client, headers, data_url(PNG)).status_code == 200  # exactly at the limit: fine
    bigger = encode(Image.new("RGB", (65, 48)), "PNG")
    refused(edit(client, headers, data_url(bigger)), 413, "payload_too_large", "input_image")


def test_input_image_over_the_byte_limit_is_413(client, headers, monkeypatch):
    monkeypatch.setattr(api.routes.image_studio, "InputLimits", functools.partial(InputLimits, max_bytes=len(PNG) - 1))
    refused(edit(client, headers, data_url(PNG)), 413, "payload_too_large", "input_image")


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_the_three_supported_formats_are_decoded(client, headers, fmt):
    image = encode(Image.new("RGB", (64, 48), (20, 120, 220)), fmt)
    assert edit(client, headers, data_url(image, f"image/{fmt.lower()}")).status_code == 200


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM", "TGA"])
def test_other_formats_are_not_decoded(client, headers, fmt):
    image = encode(Image.new("RGB", (32, 32)), fmt)
    # Labelled as a PNG, sent raw: the bytes decide, never the label. PPM/TGA have no signature we name: 400.
    status = 400 if fmt in ("PPM", "TGA") else 415
    refused(edit(client, headers, data_url(image)), status, field="input_image")
    refused(edit(client, headers, base64.b64encode(image).decode()), status, field="input_image")


@pytest.mark.parametrize("value", [
    "data:image/svg+xml;base64," + base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode(),
    "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4").decode(),
    "data:text/html;base64,PGgxPmhpPC9oMT4=",
])
def test_other_media_types_are_415(client, headers, value):
    refused(edit(client, headers, value), 415, "unsupported_media_type", "input_image")


@pytest.mark.parametrize("value", [
    data_url(PNG[: len(PNG) // 2]),  # truncated
    data_url(PNG[:8] + b"\0" * 200),  # a PNG signature and garbage
    "data:image/png;base64,!!!not-base64!!!",
    "data:image/png;base64,QUJD=x",  # data after the padding
    "data:image/png,raw-not-base64",
    "A",  # a single base64 character can never be valid
    "////",  # valid base64 of garbage
    "data:image/png;base64,",
    "\u00e9\u00e8\u0000\u202e",
])
def test_broken_image_data_is_400(client, headers, value):
    refused(edit(client, headers, value), 400, field="input_image")


def test_empty_input_image_is_refused(client, headers):
    response = edit(client, headers, "   ")
    assert response.status_code in (400, 422) and response.json()["request_id"]


# -- request bodies -----------------------------------------------------------------------------------

def test_bodies_over_the_limit_are_413_declared_or_streamed(engine, headers):
    engine.settings.max_body_bytes = 4096
    with TestClient(create_app(engine=engine, with_studio=False)) as small:
        body = json.dumps({"prompt": "x" * 5000}).encode()
        declared = small.post("/api/v1/generate", content=body, headers=headers | {"content-type": "application/json"})
        refused(declared, 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b" " * 1000

        streamed = small.post("/api/v1/image-studio", content=chunks(),
                              headers=headers | {"content-type": "application/json"})
        refused(streamed, 413, "payload_too_large")
        under = small.post("/api/v1/generate", json={"prompt": "fits", **SMALL}, headers=headers)
        assert under.status_code == 200


@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/generate", {"prompt": "x" * 2001}, "prompt"),
    ("/api/v1/generate", {"prompt": "x", "negative_prompt": "n" * 1001}, "negative_prompt"),
    ("/api/v1/generate", {"items": [{"prompt": "x"}] * 101}, "items"),
    ("/api/v1/image-studio", {"prompt": "x" * 10_001}, "prompt"),
    ("/api/v1/prompt/enhance", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
    ("/api/v1/prompt/enhance", {"prompt": "x", "tone": "t" * 101}, "tone"),
    ("/api/v1/prompt/build", {"subject": "s" * 501}, "subject"),
])
def test_prompts_over_their_limits_are_422(client, headers, path, body, field):
    refused(client.post(path, json=body, headers=headers), 422, "validation_error", field)


def test_a_too_long_batch_item_fails_alone(client, headers):
    response = client.post("/api/v1/generate", json={"items": [{"prompt": "ok"}, {"prompt": "x" * 2001}],
                                                     "model": "tiny-sd", **SMALL}, headers=headers)
    data = response.json()["data"]
    assert response.status_code == 200 and data["succeeded"] == 1
    assert data["results"][1]["error_details"]["field"] == "items.1.prompt"


@pytest.mark.parametrize("prompt", [
    "un renard 🦊 dans la neige ❄️",
    "狐狸在雪地里",
    "\u202eright-to-left override\u202c and \u200bzero\u200bwidth",
    "tabs\tand\nnew\r\nlines",
    "bell \u0007 and escape \u001b[31m",
    "e\u0301" * 500,  # combining accents
    "\U0001f600" * 300,
])
def test_unicode_and_control_characters_work(client, headers, prompt):
    response = client.post("/api/v1/generate", json={"prompt": prompt, "model": "tiny-sd", **SMALL},
                           headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["prompt"] == prompt.strip()


def test_a_nul_character_is_a_422_not_a_database_error(client, headers):
    """PostgreSQL can't store NUL in text, and no prompt means one: refused before anything is stored."""
    for path, body in (("/api/v1/generate", {"prompt": "nul \u0000 inside", **SMALL}),
                       ("/api/v1/generate", {"prompt": "x", "negative_prompt": "\u0000", **SMALL}),
                       ("/api/v1/generate", {"items": [{"prompt": "\u0000"}]}),
                       ("/api/v1/image-studio", {"prompt": "a\u0000b", "model": "tiny-sd"})):
        response = client.post(path, json=body, headers=headers)
        if "items" in body:
            item = response.json()["data"]["results"][0]
            assert response.status_code == 200 and item["error_code"] == "validation_error", response.text
            continue
        refused(response, 422)
        assert "NUL" in response.json()["error"]["message"]
    search = client.get("/api/v1/images", params={"q": "fox\x00"}, headers=headers)
    refused(search, 422, field="q")


JUNK_GENERATE_BODIES = [
    b'{"prompt": "\\ud800 lone surrogate"}',
    b'{"prompt": "x", "negative_prompt": "\\udfff"}',
    b'{"prompt": "   "}',
    b'{"prompt": "\xff\xfe not utf-8"}',
    b'{"prompt": "x", "width": 1e309}',
    b'{"prompt": "x", "guidance_scale": NaN}',
    b'{"prompt": "x", "guidance_scale": -Infinity}',
    b'{"prompt": "x", "seed": -1}',
    b'{"prompt": "x", "seed": 18446744073709551616}',
    b'{"prompt": "x", "width": -256}',
    b'{"prompt": "x", "width": 99999999999999999999999999}',
    b'{"prompt": "x", "steps": 0}',
    b'{"prompt": "x", "width": 256.5}',
    b'{"prompt": "x", "width": "wide"}',
    b'{"prompt": ["x"]}',
    b'{"prompt": {"text": "x"}}',
    b'{"prompt": 42}',
    b'{"items": "abc"}',
    b'{"items": [1, 2]}',
    b'{"items": []}',
    b'{"prompt": "x", "async": "sometimes"}',
    b'[1, 2]',
    b'"just a string"',
    b'null',
    b'',
    b'{"prompt": "x"',
]


def test_wrong_types_and_numbers_are_4xx(client, headers):
    for raw in JUNK_GENERATE_BODIES:
        response = client.post("/api/v1/generate", content=raw,
                               headers=headers | {"content-type": "application/json"})
        assert response.status_code in (400, 422), (raw, response.text)
        assert response.json()["request_id"] == response.headers["x-request-id"]


def test_other_routes_refuse_junk_with_4xx(client, headers):
    bodies = [b'{"prompt": "\\ud800", "subject": "\\ud800", "email": "\\ud800@x.io", "password": "\\ud800"}',
              b'{"prompt": 1e999}', b'\x00\x01\x02', b'[]']
    for path in ("/api/v1/image-studio", "/api/v1/prompt/enhance", "/api/v1/prompt/build", "/api/v1/auth/login"):
        for raw in bodies:
            response = client.post(path, content=raw, headers=headers | {"content-type": "application/json"})
            assert 400 <= response.status_code < 500, (path, raw, response.text)
    unknown_action = client.post("/api/v1/image-studio", json={"action": "explode", "prompt": "x"}, headers=headers)
    refused(unknown_action, 422, "validation_error", "action")


def test_odd_query_parameters_are_4xx_or_empty(client, headers):
    for query in ("limit=-1", "limit=100000", "offset=-5", "offset=99999999999999999999999", "limit=abc",
                  "q=" + "x" * 201, "q=%00%ff", "model=%ED%A0%80", "q=%25%5F%5C"):
        response = client.get(f"/api/v1/images?{query}", headers=headers)
        assert response.status_code in (200, 422), (query, response.text)
        if response.status_code == 200:
            assert response.json()["data"]["total"] == 0


def test_odd_headers_are_refused_cleanly(client, headers):
    for key in ("k" * 256, "tab\there", b"del\x7f", b"nul\x00"):
        response = client.post("/api/v1/generate", json={"prompt": "x", **SMALL},
                               headers=headers | {"Idempotency-Key": key})
        refused(response, 400, field="Idempotency-Key")
    accented = client.post("/api/v1/generate", json={"prompt": "x", **SMALL},
                           headers=headers | {"Idempotency-Key": "clé-1".encode("latin-1")})
    assert accented.status_code == 200  # printable, if not ASCII: a fine key
    assert client.get("/api/v1/usage", headers={"Authorization": b"Bearer \xff\xfe sk_live_x"}).status_code == 401
    assert client.get("/api/v1/usage", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401


# -- SSRF ---------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    hits: list[str] = []
    release = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):
        Handler.hits.append(self.path)
        routes = {
            "/img.png": (200, PNG, {"Content-Type": "image/png"}),
            "/to-metadata": (302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
            "/to-metadata-v6": (307, b"", {"Location": "http://[fd00:ec2::254]/latest/meta-data/"}),
            "/to-mapped": (301, b"", {"Location": "http://[::ffff:169.254.169.254]/"}),
            "/to-link-local": (302, b"", {"Location": "http://[fe80::1]/"}),
            "/to-file": (302, b"", {"Location": "file:///etc/passwd"}),
            "/to-self": (302, b"", {"Location": "/img.png"}),
        }
        if self.path == "/huge":  # no Content-Length: only counting stops it
            self.send_response(200)
            self.end_headers()
            for _ in range(200):
                self.wfile.write(b"x" * 1000)
            return
        if self.path == "/slow":
            Handler.release.wait(5)
        status, body, extra = routes.get(self.path, (404, b"no", {}))
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def local_site() -> Iterator[str]:
    Handler.hits = []
    Handler.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Handler.release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/img.png", "http://localhost:{port}/img.png", "http://[::1]:{port}/img.png",
    "http://2130706433:{port}/img.png", "http://0x7f.0.0.1:{port}/img.png", "http://127.1:{port}/img.png",
    "http://0.0.0.0:{port}/img.png", "http://[::ffff:127.0.0.1]:{port}/img.png",
    "http://10.0.0.1/x.png", "http://192.168.1.1/x.png", "http://172.16.0.1/x.png", "http://100.64.0.1/x.png",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://[fd00:ec2::254]/",
    "http://metadata.localhost/", "http://user:pass@example.com/x.png",
])
def test_private_and_local_urls_are_refused_without_a_fetch(client, headers, local_site, url):
    port = local_site.rsplit(":", 1)[1]
    started = time.monotonic()
    response = edit(client, headers, url.format(port=port))
    refused(response, 400, "invalid_request", "input_image")
    assert Handler.hits == [] and time.monotonic() - started < 3  # refused before connecting anywhere


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://example.com/",
                                 "dict://127.0.0.1:11211/", "jar:http://x/y!/z", "javascript:alert(1)"])
def test_non_http_schemes_are_refused(client, headers, url):
    error = refused(edit(client, headers, url), 400, "invalid_request", "input_image")
    assert "scheme" in error["message"]


@pytest.fixture
def intranet(engine):
    """An install that lets input_image URLs reach private hosts (so our 127.0.0.1 site is reachable)."""
    engine.settings.allow_private_fetch = True


def test_with_private_fetch_allowed_the_local_site_really_is_fetched(client, headers, local_site, intranet):
    assert edit(client, headers, f"{local_site}/img.png").status_code == 200
    assert edit(client, headers, f"{local_site}/to-self").status_code == 200  # a harmless redirect is followed
    assert Handler.hits == ["/img.png", "/to-self", "/img.png"]


@pytest.mark.parametrize("hop", ["/to-metadata", "/to-metadata-v6", "/to-mapped", "/to-link-local", "/to-file"])
def test_a_redirect_to_metadata_or_another_scheme_is_refused_even_on_an_intranet(client, headers, local_site,
                                                                                   intranet, hop):
    started = time.monotonic()
    error = refused(edit(client, headers, f"{local_site}{hop}"), 400, "invalid_request", "input_image")
    assert "private or local" in error["message"] or "http or https" in error["message"]
    assert Handler.hits == [hop] and time.monotonic() - started < 3  # the first hop only; no connection tried


def test_metadata_addresses_are_refused_even_on_an_intranet(client, headers, intranet):
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://100.100.100.200/"):
        error = refused(edit(client, headers, url), 400, "invalid_request", "input_image")
        assert "private or local" in error["message"]


def test_fetches_have_a_size_cap_and_a_timeout(client, headers, local_site, intranet, monkeypatch):
    limits = functools.partial(InputLimits, max_bytes=50_000, fetch_timeout_s=1.0)
    monkeypatch.setattr(api.routes.image_studio, "InputLimits", limits)
    refused(edit(client, headers, f"{local_site}/huge"), 413, "payload_too_large", "input_image")
    started = time.monotonic()
    error = refused(edit(client, headers, f"{local_site}/slow"), 400, "invalid_request", "input_image")
    assert "took longer than 1 s" in error["message"] and time.monotonic() - started < 3
