"""Decoding user-supplied input images safely.

Clients send ``input_image`` as a data URL, raw base64 or an http(s) URL that the server fetches. All three are
untrusted: sizes are capped before any work is done, only PNG, JPEG and WEBP are decoded, pixel counts are checked
from the header before pixels are allocated, and URL fetches refuse private/local addresses (SSRF) on every hop.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import re
import socket
import struct
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from PIL import Image, ImageOps

from engine.errors import InvalidRequest, PayloadTooLarge, UnsupportedMedia

__all__ = [
    "InputLimits",
    "SafeFetcher",
    "decode_image_bytes",
    "is_never_fetchable",
    "is_public_address",
    "parse_image_input",
]


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    fetch_timeout_s: float = 5.0
    max_redirects: int = 3
    allow_private_hosts: bool = False  # opt-in for tests and intranet installs only


ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
ALLOWED_MIME_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/webp"}

# Signatures of common image formats we refuse, so clients get 415 (not 400) for a real but unsupported image.
_OTHER_FORMAT_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)

# What Pillow raises for corrupt or truncated data while parsing or decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def _too_many_bytes(field: str, limits: InputLimits) -> PayloadTooLarge:
    return PayloadTooLarge(f"{field} is larger than the {_mib(limits.max_bytes)} limit", field=field)


# --------------------------------------------------------------------------------------------------------------------
# Decoding


def _sniff_other_format(data: bytes) -> str | None:
    head = data[:16]
    for signature, name in _OTHER_FORMAT_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[4:8] == b"ftyp":  # ISO media: AVIF / HEIC
        return "AVIF/HEIC"
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return "SVG"
    return None


def _check_pixels(size: tuple[int, int], limits: InputLimits, field: str) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"{field} is {width}x{height} pixels, more than the limit of {limits.max_pixels} pixels", field=field)


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit greyscale PNG: scale to 8 bits instead of letting convert() clip everything above 255 to white.
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    target = "RGBA" if has_alpha else "RGB"
    return image.copy() if image.mode == target else image.convert(target)


def decode_image_bytes(data: bytes, limits: InputLimits, field: str = "input_image") -> Image.Image:
    """Decode a PNG, JPEG or WEBP file into a fully loaded RGB or RGBA image (first frame, EXIF-rotated)."""
    if len(data) > limits.max_bytes:
        raise _too_many_bytes(field, limits)
    if not data:
        raise InvalidRequest(f"{field} is empty", field=field)

    # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that. That global may be changed (or set to
    # None) by other code, so our own header check is what enforces the limit; the warning is silenced locally
    # and Pillow's error is mapped to the same 413.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as image:
                _check_pixels(image.size, limits, field)  # header only: no pixels allocated yet
                image.seek(0)  # animated images: first frame only
                image.load()
                oriented = ImageOps.exif_transpose(image)  # always a new single-frame image
                return _to_rgb_or_rgba(oriented)
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"{field} has too many pixels", field=field) from exc
        except Image.UnidentifiedImageError as exc:
            other = _sniff_other_format(data)
            if other:
                raise UnsupportedMedia(
                    f"{field} is a {other} image; only PNG, JPEG and WEBP are supported", field=field) from exc
            raise InvalidRequest(f"{field} is not a valid PNG, JPEG or WEBP image", field=field) from exc
        except _DECODE_ERRORS as exc:
            raise InvalidRequest(f"{field} could not be decoded: the image is truncated or corrupt",
                                 field=field) from exc


# --------------------------------------------------------------------------------------------------------------------
# Parsing data URLs, base64 and URLs

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def _decode_base64(text: str, limits: InputLimits, field: str) -> bytes:
    compact = "".join(text.split())
    if not compact:
        raise InvalidRequest(f"{field} is empty", field=field)
    # Every 4 base64 characters carry 3 bytes: refuse oversized input before spending time and memory decoding it.
    if (len(compact) * 3) // 4 - compact.count("=", -2) > limits.max_bytes:
        raise _too_many_bytes(field, limits)
    if len(compact) % 4 == 1:  # no amount of padding makes this valid
        raise InvalidRequest(f"{field} is not valid base64", field=field)
    compact += "=" * (-len(compact) % 4)  # clients often drop the padding
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{field} is not valid base64", field=field) from exc


def _parse_data_url(value: str, limits: InputLimits, field: str) -> bytes:
    header, comma, payload = value[len("data:"):].partition(",")
    if not comma:
        raise InvalidRequest(f"{field} data URL has no ',' before the data", field=field)
    parts = [part.strip().lower() for part in header.split(";")]
    mime, params = parts[0], parts[1:]
    if "base64" not in params:
        raise InvalidRequest(f"{field} data URL must be base64-encoded (data:image/png;base64,...)", field=field)
    if mime not in ALLOWED_MIME_TYPES:
        raise UnsupportedMedia(
            f"{field} data URL type {mime or '(none)'!r} is not supported; use image/png, image/jpeg or image/webp",
            field=field)
    return _decode_base64(payload, limits, field)


def parse_image_input(value: str, limits: InputLimits, fetcher: SafeFetcher | None = None,
                      field: str = "input_image") -> Image.Image:
    """Turn a data URL, raw base64 or http(s) URL into a decoded image (see ``decode_image_bytes``)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string", field=field)
    value = value.strip()
    if not value:
        raise InvalidRequest(f"{field} is empty", field=field)

    scheme_match = _SCHEME.match(value)
    scheme = scheme_match.group(1).lower() if scheme_match else None
    if scheme == "data":
        data = _parse_data_url(value, limits, field)
    elif scheme in ("http", "https"):
        data = (fetcher or SafeFetcher(limits)).fetch(value, field=field)
    elif scheme is not None:
        # ':' is not a base64 character, so this is a URL with a scheme we never follow (file:, ftp:, gopher:, ...).
        raise InvalidRequest(
            f"{field} URL scheme {scheme!r} is not supported; send a data URL, base64 or an http(s) URL", field=field)
    else:
        data = _decode_base64(value, limits, field)
    return decode_image_bytes(data, limits, field)


# --------------------------------------------------------------------------------------------------------------------
# Fetching URLs without SSRF

_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}

Resolver = Callable[..., list]


def _is_public_v4(addr: ipaddress.IPv4Address) -> bool:
    # is_global alone is not enough on every Python version (e.g. 3.11 says multicast is global).
    return addr.is_global and not (addr.is_multicast or addr.is_reserved or addr.is_loopback
                                   or addr.is_link_local or addr.is_private or addr.is_unspecified)


def _translated_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address is only a different spelling of (::ffff:a.b.c.d, 64:ff9b::a.b.c.d)."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _tunnelled_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4, Teredo or IPv4-compatible (::a.b.c.d, also :: and ::1) address leads to."""
    if int(addr) >> 32 == 0:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.sixtofour or (addr.teredo[1] if addr.teredo else None)


# Cloud metadata services outside the link-local ranges (AWS over IPv6, Alibaba Cloud).
_METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


def is_never_fetchable(ip: str) -> bool:
    """True for addresses refused even where private hosts are allowed: link-local ones (169.254.169.254, the
    metadata service of most clouds, and fe80::/10), other cloud metadata addresses, multicast and unspecified
    addresses, in any spelling."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return True
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        candidates += [v4 for v4 in (_translated_v4(addr), _tunnelled_v4(addr)) if v4 is not None]
    return any(a in _METADATA_ADDRESSES or a.is_link_local or a.is_multicast or a.is_unspecified
               for a in candidates)


def check_service_url(url: str, field: str = "base_url", resolver: Resolver = socket.getaddrinfo) -> None:
    """An admin-configured service URL (a text model's ``base_url``): http(s), no credentials in it, and none of
    its addresses a cloud metadata or link-local one. Private hosts are fine: a local model server is the point."""
    fetcher = SafeFetcher(InputLimits(allow_private_hosts=True), resolver=resolver)
    fetcher._resolve(fetcher._parse_url(url, field), field)


def is_public_address(ip: str) -> bool:
    """True only for globally routable unicast addresses, also looking inside IPv6 forms that embed an IPv4."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv4Address):
        return _is_public_v4(addr)

    # IPv6 forms that carry an IPv4 address: the embedded address must be public too.
    translated = _translated_v4(addr)
    if translated is not None:
        return _is_public_v4(translated)  # only a different spelling of the IPv4 address
    tunnelled = _tunnelled_v4(addr)
    if tunnelled is not None and not _is_public_v4(tunnelled):
        return False

    return addr.is_global and not (addr.is_multicast or addr.is_reserved or addr.is_loopback or addr.is_link_local
                                   or addr.is_private or addr.is_site_local or addr.is_unspecified)


def _is_local_hostname(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


class SafeFetcher:
    """Fetches an image URL for the server while refusing private and local destinations (SSRF).

    Each hop's host is resolved once, every resolved address is vetted, and the connection goes to that vetted IP
    (the URL host is replaced by it; ``Host`` and TLS SNI keep the real name), so a DNS answer that changes between
    the check and the connection (DNS rebinding) cannot redirect us. Redirects are followed by hand and re-checked.
    ``fetch_timeout_s`` is a deadline for the whole fetch, checked between reads; each connect/read also times out
    after the time that was left when its hop started.
    """

    def __init__(self, limits: InputLimits, resolver: Resolver = socket.getaddrinfo,
                 transport: httpx.BaseTransport | None = None):
        self.limits = limits
        self.resolver = resolver
        self.transport = transport

    def fetch(self, url: str, field: str = "input_image") -> bytes:
        deadline = time.monotonic() + self.limits.fetch_timeout_s
        if self.transport is not None:
            return self._fetch(url, self.transport, deadline, field)
        # A fresh connection pool per fetch: a pooled connection must never be reused for another name/SNI.
        with httpx.HTTPTransport(retries=0) as transport:
            return self._fetch(url, transport, deadline, field)

    def _fetch(self, url: str, transport: httpx.BaseTransport, deadline: float, field: str) -> bytes:
        current = self._parse_url(url, field)
        for _hop in range(self.limits.max_redirects + 1):
            request = self._pinned_request(current, deadline, field)
            try:
                response = transport.handle_request(request)
            except httpx.TimeoutException as exc:
                raise self._timeout(field) from exc
            except httpx.HTTPError as exc:
                raise InvalidRequest(f"could not fetch {field}: connection failed", field=field) from exc
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    try:
                        current = self._parse_url(str(current.join(location)), field)
                    except httpx.InvalidURL as exc:
                        raise InvalidRequest(f"could not fetch {field}: invalid redirect", field=field) from exc
                    continue
                if response.status_code != 200:
                    raise InvalidRequest(f"could not fetch {field}: HTTP {response.status_code}", field=field)
                return self._read_body(response, deadline, field)
            finally:
                response.close()
        raise InvalidRequest(
            f"could not fetch {field}: more than {self.limits.max_redirects} redirects", field=field)

    def _parse_url(self, url: str, field: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise InvalidRequest(f"{field} is not a valid URL", field=field) from exc
        if parsed.scheme not in ("http", "https"):
            raise InvalidRequest(f"{field} URL must use http or https", field=field)
        if parsed.userinfo:
            raise InvalidRequest(f"{field} URL must not contain credentials", field=field)
        if not parsed.host:
            raise InvalidRequest(f"{field} URL has no host", field=field)
        return parsed

    def _refused(self, field: str) -> InvalidRequest:
        # Deliberately vague: never echo resolved IPs back to the client.
        return InvalidRequest(f"{field} URL points to a private or local address", field=field)

    def _timeout(self, field: str) -> InvalidRequest:
        return InvalidRequest(f"could not fetch {field}: the server took longer than "
                              f"{self.limits.fetch_timeout_s:g} s", field=field)

    def _resolve(self, url: httpx.URL, field: str) -> str:
        """Return the IP to connect to, refusing the host if any of its addresses is not public."""
        host = url.raw_host.decode("ascii")  # IDNA-encoded, exactly what httpx puts on the wire
        check = not self.limits.allow_private_hosts
        if check and _is_local_hostname(host):
            raise self._refused(field)
        try:
            ipaddress.ip_address(host)
            addresses = [host]  # an IP literal needs no DNS
        except ValueError:
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                infos = self.resolver(host, port, 0, socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
                raise InvalidRequest(f"could not fetch {field}: the host name could not be resolved",
                                     field=field) from exc
            addresses = [info[4][0] for info in infos]
        if not addresses:
            raise InvalidRequest(f"could not fetch {field}: the host name could not be resolved", field=field)
        # ALL addresses must pass: otherwise an attacker's DNS could list one public and one private address.
        if check and not all(is_public_address(address) for address in addresses):
            raise self._refused(field)
        if any(is_never_fetchable(address) for address in addresses):  # metadata services: not even on intranets
            raise self._refused(field)
        return addresses[0].split("%", 1)[0]

    def post(self, url: str, body: bytes, headers: dict[str, str], field: str = "callback_url") -> int:
        """POST ``body`` to ``url`` under the same address rules as a fetch (the connection pinned to the vetted
        address, redirects not followed); the answer's status code."""
        deadline = time.monotonic() + self.limits.fetch_timeout_s
        request = self._pinned_request(self._parse_url(url, field), deadline, field, method="POST", body=body,
                                       headers=headers)
        with httpx.HTTPTransport(retries=0) as transport:
            try:
                response = transport.handle_request(request)
            except httpx.TimeoutException as exc:
                raise self._timeout(field) from exc
            except httpx.HTTPError as exc:
                raise InvalidRequest(f"could not reach {field}: connection failed", field=field) from exc
            response.close()
            return response.status_code

    def check(self, url: str, field: str) -> None:
        """Refuse a URL this fetcher would refuse, without connecting (for URLs kept to be called later)."""
        self._resolve(self._parse_url(url, field), field)

    def _pinned_request(self, url: httpx.URL, deadline: float, field: str, *, method: str = "GET",
                        body: bytes | None = None, headers: dict[str, str] | None = None) -> httpx.Request:
        ip = self._resolve(url, field)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout(field)
        host_header = url.netloc.decode("ascii")  # name[:port], exactly as the server expects it
        hostname = url.raw_host.decode("ascii")
        extensions: dict = {"timeout": {"connect": remaining, "read": remaining, "write": remaining,
                                        "pool": remaining}}
        if url.scheme == "https":
            extensions["sni_hostname"] = hostname  # the TLS handshake and certificate check use the real name
        return httpx.Request(
            method, url.copy_with(host=ip), content=body,
            # identity: a compressed body could expand far beyond max_bytes before we get to count it
            headers={"Host": host_header, "Accept": "image/png, image/jpeg, image/webp",
                     "Accept-Encoding": "identity", "User-Agent": "ImageStudio-fetcher", **(headers or {})},
            extensions=extensions,
        )

    def _read_body(self, response: httpx.Response, deadline: float, field: str) -> bytes:
        max_bytes = self.limits.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise _too_many_bytes(field, self.limits)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise InvalidRequest(f"could not fetch {field}: compressed responses are not supported", field=field)
        body = bytearray()
        try:
            for chunk in response.iter_bytes():  # identity only, so these are the raw bytes as they arrive
                body += chunk
                if len(body) > max_bytes:  # Content-Length may be absent or wrong
                    raise _too_many_bytes(field, self.limits)
                if time.monotonic() > deadline:  # overall budget, not just per read
                    raise self._timeout(field)
        except httpx.TimeoutException as exc:
            raise self._timeout(field) from exc
        except httpx.HTTPError as exc:
            raise InvalidRequest(f"could not fetch {field}: the connection failed while reading", field=field) from exc
        return bytes(body)
