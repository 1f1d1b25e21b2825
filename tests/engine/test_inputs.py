"""Safe decoding of user-supplied input images: formats, limits and SSRF-proof URL fetching."""

from __future__ import annotations

import base64
import io
import random
import socket
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from engine.errors import InvalidRequest, PayloadTooLarge, UnsupportedMedia
from engine.generation.inputs import InputLimits, SafeFetcher, decode_image_bytes, is_public_address, parse_image_input

LIMITS = InputLimits()
PUBLIC_IP = "93.184.216.34"
PRIVATE_MESSAGE = "input_image URL points to a private or local address"


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def red(mode: str = "RGB", size=(8, 6)) -> Image.Image:
    return Image.new(mode, size, (255, 0, 0) if mode == "RGB" else (255, 0, 0, 128))


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height while the file stays tiny (a decompression bomb header)."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then chunk length + type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


# --------------------------------------------------------------------------------------------------------------------
# Decoding


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_data_url_decodes_each_allowed_format(fmt, mime):
    image = parse_image_input(f"data:{mime};base64,{b64(encode(red(), fmt))}", LIMITS)
    assert image.mode == "RGB" and image.size == (8, 6)
    r, g, b = image.getpixel((3, 3))
    assert r > 240 and g < 15 and b < 15


def test_rgba_png_keeps_alpha():
    image = parse_image_input(b64(encode(red("RGBA"), "PNG")), LIMITS)
    assert image.mode == "RGBA" and image.getpixel((0, 0)) == (255, 0, 0, 128)


@pytest.mark.parametrize("mode,expected", [("L", "RGB"), ("LA", "RGBA"), ("P", "RGB"), ("1", "RGB")])
def test_other_modes_become_rgb_or_rgba(mode, expected):
    assert decode_image_bytes(encode(Image.new(mode, (4, 4)), "PNG"), LIMITS).mode == expected


def test_palette_with_transparency_becomes_rgba():
    image = Image.new("P", (4, 4), 0)
    image.info["transparency"] = 0
    assert decode_image_bytes(encode(image, "PNG", transparency=0), LIMITS).mode == "RGBA"


def test_16_bit_greyscale_is_scaled_not_clipped():
    image = decode_image_bytes(encode(Image.new("I;16", (4, 4), 32768), "PNG"), LIMITS)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_jpeg_becomes_rgb():
    assert decode_image_bytes(encode(Image.new("CMYK", (4, 4)), "JPEG"), LIMITS).mode == "RGB"


@pytest.mark.parametrize("padding", [True, False])
def test_raw_base64_with_and_without_padding(padding):
    data = next(d for w in range(1, 20) if len(d := encode(red(size=(w, 6)), "PNG")) % 3)  # one that needs padding
    text = b64(data)
    assert text.endswith("=")
    if not padding:
        text = text.rstrip("=")
    assert parse_image_input(text, LIMITS).height == 6


def test_base64_with_line_breaks_is_accepted():
    text = b64(encode(red(), "PNG"))
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert parse_image_input(f"  {wrapped}\n", LIMITS).size == (8, 6)


@pytest.mark.parametrize("value", ["not base64 at all!", "abc$def", "QUJD=QUJD", "A", "data:image/png;base64,@@@@"])
def test_junk_base64_is_invalid(value):
    with pytest.raises(InvalidRequest) as err:
        parse_image_input(value, LIMITS)
    assert err.value.field == "input_image"


def test_base64_of_non_image_is_invalid():
    with pytest.raises(InvalidRequest, match="not a valid PNG, JPEG or WEBP"):
        parse_image_input(b64(b"hello, this is plain text and not an image"), LIMITS)


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_is_invalid(value):
    with pytest.raises(InvalidRequest, match="empty"):
        parse_image_input(value, LIMITS)


def test_non_string_is_invalid():
    with pytest.raises(InvalidRequest):
        parse_image_input(b"bytes", LIMITS)  # type: ignore[arg-type]


def test_truncated_png_is_invalid():
    noisy = Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48)
    data = encode(noisy, "PNG")
    with pytest.raises(InvalidRequest, match="truncated or corrupt"):
        decode_image_bytes(data[: len(data) // 2], LIMITS)


def test_corrupt_jpeg_is_invalid():
    data = encode(red(size=(64, 64)), "JPEG")
    with pytest.raises(InvalidRequest):
        decode_image_bytes(data[:200], LIMITS)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_unsupported(fmt):
    data = encode(red(), fmt)
    with pytest.raises(UnsupportedMedia, match=fmt):
        decode_image_bytes(data, LIMITS)
    with pytest.raises(UnsupportedMedia):
        parse_image_input(b64(data), LIMITS)
    with pytest.raises(UnsupportedMedia):  # the declared type does not matter: the bytes are checked
        parse_image_input(f"data:image/png;base64,{b64(data)}", LIMITS)


@pytest.mark.parametrize("mime", ["image/gif", "image/svg+xml", "text/plain", "application/octet-stream", ""])
def test_data_url_with_other_mime_is_unsupported(mime):
    with pytest.raises(UnsupportedMedia):
        parse_image_input(f"data:{mime};base64,{b64(encode(red(), 'PNG'))}", LIMITS)


def test_data_url_without_base64_is_invalid():
    with pytest.raises(InvalidRequest, match="base64"):
        parse_image_input("data:image/png,%89PNG", LIMITS)
    with pytest.raises(InvalidRequest):
        parse_image_input("data:image/png;base64", LIMITS)


def test_oversize_bytes_are_too_large():
    limits = InputLimits(max_bytes=1000)
    big = encode(Image.frombytes("L", (100, 100), random.Random(0).randbytes(10_000)), "PNG")
    assert len(big) > 1000
    with pytest.raises(PayloadTooLarge):
        decode_image_bytes(big, limits)
    with pytest.raises(PayloadTooLarge):
        parse_image_input(b64(big), limits)
    with pytest.raises(PayloadTooLarge):
        parse_image_input(f"data:image/png;base64,{b64(big)}", limits)


def test_base64_size_is_checked_before_decoding():
    # Not even valid base64, but long enough to exceed the limit: the length alone decides.
    with pytest.raises(PayloadTooLarge):
        parse_image_input("!" * 2000, InputLimits(max_bytes=1000))


def test_decompression_bomb_header_is_refused_without_allocating():
    bomb = png_with_size(50000, 50000)  # 2.5 gigapixels in a few dozen bytes
    assert len(bomb) < 100
    with pytest.raises(PayloadTooLarge):
        decode_image_bytes(bomb, LIMITS)


def test_pixel_limit_is_ours_not_pillows(monkeypatch):
    # 5000x5000 is under Pillow's own bomb threshold but over our 4096x4096 default.
    with pytest.raises(PayloadTooLarge, match="5000x5000"):
        decode_image_bytes(png_with_size(5000, 5000), LIMITS)
    # Still enforced if other code disabled Pillow's global check.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(PayloadTooLarge):
        decode_image_bytes(png_with_size(5000, 5000), LIMITS)


def test_small_pixel_limit_refuses_real_image():
    with pytest.raises(PayloadTooLarge):
        decode_image_bytes(encode(red(size=(20, 20)), "PNG"), InputLimits(max_pixels=399))
    assert decode_image_bytes(encode(red(size=(20, 20)), "PNG"), InputLimits(max_pixels=400)).size == (20, 20)


def test_pillow_global_limit_is_untouched_and_no_warning_escapes():
    before = Image.MAX_IMAGE_PIXELS
    limits = InputLimits(max_pixels=200_000_000)  # above Pillow's warning threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidRequest):  # header passes our check; the (missing) pixel data does not
            decode_image_bytes(png_with_size(10000, 10000), limits)
    assert Image.MAX_IMAGE_PIXELS == before


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    data = encode(Image.new("RGB", (20, 10), "red"), "JPEG", exif=exif.tobytes())
    image = decode_image_bytes(data, LIMITS)
    assert image.size == (10, 20)


def test_animated_image_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")]
    for fmt in ("PNG", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
        assert Image.open(io.BytesIO(data)).n_frames == 2
        image = decode_image_bytes(data, LIMITS)
        assert image.getpixel((4, 4))[:3] == (255, 0, 0)
        assert getattr(image, "n_frames", 1) == 1


def test_custom_field_name_is_reported():
    with pytest.raises(InvalidRequest) as err:
        parse_image_input("???", LIMITS, field="mask_image")
    assert err.value.field == "mask_image" and "mask_image" in err.value.message
    with pytest.raises(PayloadTooLarge) as too_large:
        decode_image_bytes(b"x" * 20, InputLimits(max_bytes=10), field="mask_image")
    assert too_large.value.field == "mask_image"


@pytest.mark.parametrize("value", [
    "file:///etc/passwd", "FILE:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/",
    "javascript:alert(1)", "C:\\images\\a.png", "dict://127.0.0.1:6379/",
])
def test_other_schemes_are_refused(value):
    with pytest.raises(InvalidRequest, match="not supported"):
        parse_image_input(value, LIMITS)


# --------------------------------------------------------------------------------------------------------------------
# SSRF: fake resolver and mock transport


def fake_resolver(mapping: dict[str, str], calls: list[str] | None = None):
    def resolve(host, port, *args, **kwargs):
        if calls is not None:
            calls.append(host)
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ip = mapping[host]
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sockaddr = (ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
    return resolve


class Recorder:
    """An httpx.MockTransport that records requests and answers from a small routing function."""

    def __init__(self, route):
        self.requests: list[httpx.Request] = []
        self.route = route
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.route(request)


def must_not_connect(request):  # a refusal must happen before any connection
    raise AssertionError(f"unexpected request to {request.url}")


PNG = encode(red(), "PNG")

BLOCKED_ADDRESSES = [
    "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fc00::1",
    "fd12:3456::1", "fe80::1", "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255", "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::", "::127.0.0.1", "fec0::1",
]


@pytest.mark.parametrize("ip", BLOCKED_ADDRESSES)
def test_hosts_resolving_to_non_public_addresses_are_refused(ip):
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({"target.example": ip}),
                          transport=httpx.MockTransport(must_not_connect))
    with pytest.raises(InvalidRequest) as err:
        parse_image_input("http://target.example/a.png", LIMITS, fetcher=fetcher)
    assert err.value.message == PRIVATE_MESSAGE and ip not in err.value.message
    assert not is_public_address(ip)


@pytest.mark.parametrize("ip", BLOCKED_ADDRESSES)
def test_ip_literal_urls_are_refused(ip):
    host = f"[{ip}]" if ":" in ip else ip
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({}), transport=httpx.MockTransport(must_not_connect))
    with pytest.raises(InvalidRequest, match="private or local"):
        fetcher.fetch(f"http://{host}/latest/meta-data/")


def test_one_private_address_among_public_ones_is_refused():
    def resolver(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port))]
    fetcher = SafeFetcher(LIMITS, resolver=resolver, transport=httpx.MockTransport(must_not_connect))
    with pytest.raises(InvalidRequest, match="private or local"):
        fetcher.fetch("http://mixed.example/")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "api.localhost"])
def test_localhost_names_are_refused_without_resolving(host):
    calls: list[str] = []
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({}, calls), transport=httpx.MockTransport(must_not_connect))
    with pytest.raises(InvalidRequest, match="private or local"):
        fetcher.fetch(f"http://{host}:8080/a.png")
    assert calls == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "017700000001", "127.1", "0x7f000001"])
def test_numeric_ip_tricks_are_refused_via_the_real_resolver(host):
    # getaddrinfo parses these numeric forms locally (no DNS query) and reveals 127.0.0.1.
    assert socket.getaddrinfo(host, 80, 0, socket.SOCK_STREAM)[0][4][0] == "127.0.0.1"
    fetcher = SafeFetcher(LIMITS, transport=httpx.MockTransport(must_not_connect))
    with pytest.raises(InvalidRequest, match="private or local"):
        fetcher.fetch(f"http://{host}/")


@pytest.mark.parametrize("url,message", [
    ("http://user:secret@good.example/a.png", "credentials"),
    ("http://@good.example/a.png", None),
    ("ftp://good.example/a.png", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("http:///a.png", None),
])
def test_fetcher_refuses_bad_urls(url, message):
    recorder = Recorder(lambda request: httpx.Response(200, content=PNG))
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({"good.example": PUBLIC_IP}), transport=recorder.transport)
    try:
        fetcher.fetch(url)
    except InvalidRequest as err:
        assert message is None or message in err.message
    else:
        # "http://@host" has an empty userinfo, which is harmless: it must still have been pinned.
        assert url == "http://@good.example/a.png"
        assert recorder.requests[0].url.host == PUBLIC_IP


def test_public_host_is_fetched_from_the_pinned_ip_with_host_header():
    recorder = Recorder(lambda request: httpx.Response(200, content=PNG))
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({"good.example": PUBLIC_IP}), transport=recorder.transport)
    image = parse_image_input("http://good.example:8080/img.png?size=1", LIMITS, fetcher=fetcher)
    assert image.size == (8, 6)
    [request] = recorder.requests
    assert str(request.url) == f"http://{PUBLIC_IP}:8080/img.png?size=1"
    assert request.headers["host"] == "good.example:8080"
    assert request.headers["accept-encoding"] == "identity"
    assert "sni_hostname" not in request.extensions


def test_https_pins_ip_and_keeps_the_real_name_for_tls():
    recorder = Recorder(lambda request: httpx.Response(200, content=PNG))
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({"good.example": PUBLIC_IP}), transport=recorder.transport)
    fetcher.fetch("https://good.example/img.png")
    [request] = recorder.requests
    assert str(request.url) == f"https://{PUBLIC_IP}/img.png"
    assert request.headers["host"] == "good.example"
    assert request.extensions["sni_hostname"] == "good.example"
    assert request.extensions["timeout"]["connect"] <= LIMITS.fetch_timeout_s


def test_international_names_are_resolved_and_sent_idna_encoded():
    recorder = Recorder(lambda request: httpx.Response(200, content=PNG))
    resolver = fake_resolver({"xn--bcher-kva.example": PUBLIC_IP})
    SafeFetcher(LIMITS, resolver=resolver, transport=recorder.transport).fetch("https://bücher.example/a.png")
    [request] = recorder.requests
    assert request.headers["host"] == request.extensions["sni_hostname"] == "xn--bcher-kva.example"


def test_ipv6_host_is_pinned_with_brackets():
    ip = "2606:2800:220:1:248:1893:25c8:1946"
    recorder = Recorder(lambda request: httpx.Response(200, content=PNG))
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({"v6.example": ip}), transport=recorder.transport)
    fetcher.fetch("http://v6.example/img.png")
    assert str(recorder.requests[0].url) == f"http://[{ip}]/img.png"


def test_host_is_resolved_once_per_hop_and_that_answer_is_used():
    # DNS rebinding: a second lookup would say 127.0.0.1, but only the vetted first answer is ever used.
    answers = iter([PUBLIC_IP, "127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    recorder = Recorder(lambda request: httpx.Response(200, content=PNG))
    SafeFetcher(LIMITS, resolver=rebinding, transport=recorder.transport).fetch("http://rebind.example/")
    assert recorder.requests[0].url.host == PUBLIC_IP


REDIRECT_DNS = {"good.example": PUBLIC_IP, "good2.example": "93.184.216.35", "evil.example": "10.0.0.1"}


@pytest.mark.parametrize("location", [
    "http://evil.example/meta", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
    "http://localhost/", "file:///etc/passwd", "ftp://good2.example/a.png",
])
def test_redirect_hops_are_revalidated(location):
    def route(request):
        assert request.url.host == PUBLIC_IP and request.headers["host"] == "good.example"
        return httpx.Response(302, headers={"Location": location})

    recorder = Recorder(route)
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver(REDIRECT_DNS), transport=recorder.transport)
    with pytest.raises(InvalidRequest):
        parse_image_input("http://good.example/start", LIMITS, fetcher=fetcher)
    assert len(recorder.requests) == 1  # the refused hop was never contacted


def test_allowed_redirects_are_followed_and_pinned():
    def route(request):
        if request.headers["host"] == "good.example":
            return httpx.Response(301, headers={"Location": "https://good2.example/next"})
        if request.url.path == "/next":
            return httpx.Response(307, headers={"Location": "/final.png"})  # relative to good2.example
        return httpx.Response(200, content=PNG)

    recorder = Recorder(route)
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver(REDIRECT_DNS), transport=recorder.transport)
    assert fetcher.fetch("http://good.example/start") == PNG
    assert [str(r.url) for r in recorder.requests] == [
        f"http://{PUBLIC_IP}/start", "https://93.184.216.35/next", "https://93.184.216.35/final.png"]
    assert [r.headers["host"] for r in recorder.requests] == ["good.example", "good2.example", "good2.example"]
    assert recorder.requests[2].extensions["sni_hostname"] == "good2.example"


def test_too_many_redirects_are_refused():
    recorder = Recorder(lambda request: httpx.Response(302, headers={"Location": "/again"}))
    limits = InputLimits(max_redirects=3)
    fetcher = SafeFetcher(limits, resolver=fake_resolver(REDIRECT_DNS), transport=recorder.transport)
    with pytest.raises(InvalidRequest, match="redirects"):
        fetcher.fetch("http://good.example/")
    assert len(recorder.requests) == 4  # the first request plus three redirects


@pytest.mark.parametrize("status", [404, 500, 204, 304])
def test_non_200_is_invalid(status):
    recorder = Recorder(lambda request: httpx.Response(status))
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver(REDIRECT_DNS), transport=recorder.transport)
    with pytest.raises(InvalidRequest, match=f"could not fetch input_image: HTTP {status}"):
        fetcher.fetch("http://good.example/")


@pytest.mark.parametrize("error,message", [
    (httpx.ConnectError("refused"), "connection failed"),
    (httpx.ConnectTimeout("slow"), "took longer"),
    (httpx.RemoteProtocolError("bad"), "connection failed"),
])
def test_network_errors_are_invalid_requests(error, message):
    def route(request):
        raise error

    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver(REDIRECT_DNS), transport=httpx.MockTransport(route))
    with pytest.raises(InvalidRequest, match=message):
        fetcher.fetch("http://good.example/")


def test_unresolvable_host_is_invalid():
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({}), transport=httpx.MockTransport(must_not_connect))
    with pytest.raises(InvalidRequest, match="could not be resolved"):
        fetcher.fetch("http://nowhere.example/")


def test_compressed_response_is_refused():
    body = zlib.compress(b"\0" * 100_000)
    recorder = Recorder(lambda request: httpx.Response(200, headers={"Content-Encoding": "deflate"}, content=body))
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver(REDIRECT_DNS), transport=recorder.transport)
    with pytest.raises(InvalidRequest, match="compressed"):
        fetcher.fetch("http://good.example/")


# --------------------------------------------------------------------------------------------------------------------
# A real HTTP server on 127.0.0.1


class ImageHandler(BaseHTTPRequestHandler):
    release = threading.Event()  # set at teardown so slow handlers finish

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path == "/img.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif self.path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10_000_000))
            self.end_headers()
            self.wfile.write(b"x" * 100)
        elif self.path == "/huge-streamed":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 1000)
        elif self.path == "/slow":
            self.release.wait(3)
            self._send(200, PNG, {})
        elif self.path == "/drip":  # each byte arrives quickly, the whole body never does
            self.send_response(200)
            self.end_headers()
            for _ in range(30):
                if self.release.wait(0.1):
                    break
                self.wfile.write(b"x")
                self.wfile.flush()
        else:
            self._send(404, b"nope", {})

    def _send(self, status, body, headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    server.block_on_close = False
    ImageHandler.release.clear()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    ImageHandler.release.set()
    server.shutdown()
    server.server_close()


PRIVATE_OK = InputLimits(allow_private_hosts=True)


def test_local_server_is_refused_by_default(local_server):
    with pytest.raises(InvalidRequest, match="private or local"):
        parse_image_input(f"{local_server}/img.png", LIMITS)
    port = local_server.rsplit(":", 1)[1]
    with pytest.raises(InvalidRequest, match="private or local"):
        parse_image_input(f"http://localhost:{port}/img.png", LIMITS)


def test_local_server_is_fetched_when_private_hosts_are_allowed(local_server):
    image = parse_image_input(f"{local_server}/img.png", PRIVATE_OK)
    assert image.size == (8, 6) and image.getpixel((0, 0)) == (255, 0, 0)


def test_local_server_404_is_invalid(local_server):
    with pytest.raises(InvalidRequest, match="HTTP 404"):
        SafeFetcher(PRIVATE_OK).fetch(f"{local_server}/missing")


class LoopbackTransport(httpx.BaseTransport):
    """Sends requests pinned to PUBLIC_IP to the local server instead, so a real first hop passes the checks."""

    def __init__(self, base_url: str):
        self.port = httpx.URL(base_url).port
        self.inner = httpx.HTTPTransport()
        self.hosts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == PUBLIC_IP
        self.hosts.append(request.headers["host"])
        local = httpx.Request(request.method, request.url.copy_with(host="127.0.0.1", port=self.port),
                              headers=request.headers, extensions=request.extensions)
        return self.inner.handle_request(local)


def test_real_redirect_to_metadata_is_refused(local_server):
    transport = LoopbackTransport(local_server)
    fetcher = SafeFetcher(LIMITS, resolver=fake_resolver({"good.example": PUBLIC_IP}), transport=transport)
    assert fetcher.fetch("http://good.example/img.png") == PNG  # the first hop is allowed and really fetched
    with pytest.raises(InvalidRequest, match="private or local"):
        fetcher.fetch("http://good.example/redirect")  # ...but its redirect to 169.254.169.254 is not followed
    assert transport.hosts == ["good.example", "good.example"]
    transport.inner.close()


def test_declared_content_length_over_limit_is_refused(local_server):
    with pytest.raises(PayloadTooLarge):
        SafeFetcher(InputLimits(allow_private_hosts=True, max_bytes=10_000)).fetch(f"{local_server}/huge-declared")


def test_streamed_body_over_limit_is_refused(local_server):
    with pytest.raises(PayloadTooLarge):
        SafeFetcher(InputLimits(allow_private_hosts=True, max_bytes=10_000)).fetch(f"{local_server}/huge-streamed")
    assert len(SafeFetcher(PRIVATE_OK).fetch(f"{local_server}/huge-streamed")) == 100_000


def test_slow_server_times_out(local_server):
    limits = InputLimits(allow_private_hosts=True, fetch_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="took longer than 0.5 s"):
        parse_image_input(f"{local_server}/slow", limits)
    assert time.monotonic() - started < 2


def test_dripping_server_hits_the_overall_deadline(local_server):
    limits = InputLimits(allow_private_hosts=True, fetch_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="took longer"):
        SafeFetcher(limits).fetch(f"{local_server}/drip")
    assert time.monotonic() - started < 2
