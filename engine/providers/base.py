"""Remote providers: proprietary models through their vendors' APIs, beside the local pipelines.

A provider turns a generation's parameters into image bytes on the vendor's service: submit, poll until done
(or a time limit), download the result, cancel where the vendor allows. Its failures become domain errors with
messages a client can act on (the API maps them to statuses in one place): the vendor account out of credit or
the vendor down is the server's problem (503), a moderated prompt or a request the vendor refuses is the
caller's (400), a vendor that doesn't answer in time is a 504. Calls go only to the provider's configured base
URL and, for results, to the hosts it names (a vendor's CDN); nothing else.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from engine.errors import (
    EngineError,
    InvalidRequest,
    JobCancelled,
    ProviderOutOfCredit,
    ProviderTimeout,
    ProviderUnavailable,
)
from engine.generation.params import ResolvedParams


@dataclass(frozen=True)
class ProviderConfig:
    """An admin's configuration of one provider (Admin → Providers; the key is encrypted at rest)."""

    api_key: str
    base_url: str
    # Hosts results may be downloaded from besides the base URL's (a vendor's CDN); a leading "." matches any
    # subdomain.
    result_hosts: tuple[str, ...] = ()
    timeout_s: float = 300.0  # the whole job: submit, polling and download
    poll_interval_s: float = 1.0


StopCheck = Callable[[], bool]


class Provider:
    """The common part of every vendor adapter: HTTP with the configured base URL, polling, errors."""

    name = "provider"
    label = "a provider"  # shown in the studio: "via BFL API"

    def __init__(self, config: ProviderConfig, http: httpx.Client | None = None):
        self.config = config
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False)
        self.base = config.base_url.rstrip("/")

    # -- what each adapter implements ---------------------------------------------------------------
    def generate(self, model: str, params: ResolvedParams, should_stop: StopCheck) -> bytes:
        """The image as the vendor sent it (PNG, JPEG or WebP)."""
        raise NotImplementedError

    def remove_background(self, image: Image.Image, should_stop: StopCheck) -> bytes:
        raise InvalidRequest(f"{self.label} does not remove backgrounds")

    def test(self) -> str:
        """A cheap authenticated call: what it says about the account (raises on a bad key or a vendor down)."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def request(self, method: str, path_or_url: str, *, authenticated: bool = True, **kwargs) -> httpx.Response:
        """A call to the vendor; only to its base URL (or, for polling URLs it hands out, its own hosts)."""
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base + path_or_url
        self.check_host(url)
        headers = (self.headers() if authenticated else {}) | kwargs.pop("headers", {})
        try:
            response = self._http.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"{self.label} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{self.label} can't be reached ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise self.error_for(response)
        return response

    def json(self, response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderUnavailable(f"{self.label} answered with something that is not JSON") from exc
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"{self.label} answered with an unexpected shape")
        return body

    def error_for(self, response: httpx.Response) -> EngineError:
        """The domain error for a vendor's error status; adapters refine it with the vendor's own codes."""
        status, detail = response.status_code, self.detail(response)
        if status == 402:
            return ProviderOutOfCredit(f"the server's {self.label} account is out of credit; an admin must top "
                                       f"it up ({detail})")
        if status in (401, 403):
            return ProviderUnavailable(f"{self.label} refused the server's API key; an admin must check it "
                                       f"(Admin → Providers) ({detail})")
        if status == 429:
            return ProviderUnavailable(f"{self.label} is busy (too many requests at once); try again shortly")
        if status in (400, 413, 422):
            return InvalidRequest(f"{self.label} refused the request: {detail}")
        return ProviderUnavailable(f"{self.label} failed (HTTP {status}); try again later")

    @staticmethod
    def detail(response: httpx.Response, limit: int = 300) -> str:
        """The vendor's own words about an error, short (never our key: vendors don't echo it)."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:limit] or f"HTTP {response.status_code}"
        if isinstance(body, dict):
            for key in ("detail", "error", "message", "errors", "name"):
                if body.get(key):
                    value = body[key]
                    text = value if isinstance(value, str) else "; ".join(map(str, value)) \
                        if isinstance(value, list) else str(value)
                    return text[:limit]
        return str(body)[:limit]

    def check_host(self, url: str) -> None:
        host = (urlsplit(url).hostname or "").lower()
        base_host = (urlsplit(self.base).hostname or "").lower()
        if host == base_host:
            return
        for allowed in self.config.result_hosts:
            allowed = allowed.lower()
            if host == allowed or (allowed.startswith(".") and host.endswith(allowed)):
                return
        raise ProviderUnavailable(f"{self.label} pointed at {host}, which is not one of its configured hosts; "
                                  f"nothing was fetched")

    def wait(self, deadline: float, should_stop: StopCheck, cancel: Callable[[], None] | None = None) -> None:
        """Sleep one poll interval; raise at the deadline, or when the job was cancelled (cancelling at the
        vendor too where it allows)."""
        if should_stop():
            if cancel is not None:
                try:
                    cancel()
                except EngineError:
                    pass  # the job is cancelled here whatever the vendor says
            raise JobCancelled("the job was cancelled")
        if time.monotonic() >= deadline:
            raise ProviderTimeout(f"{self.label} did not finish within {self.config.timeout_s:g} s")
        time.sleep(self.config.poll_interval_s)

    def download(self, url: str) -> bytes:
        """A result URL the vendor gave: signed by the vendor, so our key goes only to the base URL's host."""
        same_host = urlsplit(url).hostname == urlsplit(self.base).hostname
        return self.request("GET", url, authenticated=same_host, headers={"Accept": "image/*"}).content


def decoded_image(data: bytes, label: str) -> Image.Image:
    """The vendor's result as a picture; anything else is the vendor's failure, not an image."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ProviderUnavailable(f"{label} returned something that is not an image") from exc
    return image
