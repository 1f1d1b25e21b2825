"""Pulling a model's weights from the hub over plain HTTP: a real progress (bytes, rate, time left), resumable
(``<file>.part`` and Range requests), cancellable between chunks, and checked against the free disk first.

The hub's documented HTTP shapes: the file list from ``GET {hub}/api/models/{repo}?blobs=true`` (``siblings``:
``rfilename`` and ``size``), each file from ``GET {hub}/{repo}/resolve/main/{path}``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from engine.errors import DiskFull, DownloadFailed, ModelUnavailable, PullCancelled
from engine.generation.catalog import ModelSpec
from engine.generation.hardware import free_disk, size_text
from engine.generation.pipelines import hub_offline
from engine.generation.tiny_models import ensure_tiny_model

log = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co"
# What a diffusers folder needs (the patterns the pull always used; fnmatch's * crosses folders).
ALLOW_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors", "*/*.json", "*/*.txt", "*/*.model",
                  "*/*.safetensors", "*/*.jinja")
# A file like unet/diffusion_pytorch_model.fp16.safetensors: a precision variant the loader never reads (it loads
# the plain files and casts), skipped when the plain one is in the repository too.
_VARIANT = re.compile(r"\.(fp16|bf16|fp32|fp8|non_ema|ema)(?=\.|-\d{5}-of-)")
RETRIES = 3  # a broken connection is resumed where it broke this many times before the pull gives up
PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True)
class PullProgress:
    done: int  # bytes on disk of this pull's files (what earlier, interrupted pulls left included)
    total: int
    rate: float  # bytes a second, over this pull's run so far
    seconds_left: float | None  # None until there is a rate
    file: str  # the file being fetched (repo path)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def text(self) -> str:
        text = f"{size_text(self.done)} of {size_text(self.total)}"
        if self.rate > 0:
            text += f" at {size_text(int(self.rate))}/s"
        if self.seconds_left is not None:
            text += f", {duration_text(self.seconds_left)} left"
        return text


ProgressEvents = Callable[[PullProgress], None]


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    path: str  # in the repository
    size: int | None  # None where the hub didn't say
    target: Path  # where it lands


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wanted_files(paths: list[str]) -> list[str]:
    """The repository files a diffusers folder needs: the allow patterns, without precision variants that have a
    plain twin, and without a diffusers repository's top-level weights (single-file checkpoints for other tools,
    e.g. flux1-schnell.safetensors: 23.8 GB the loader never reads; it reads the component folders)."""
    present = set(paths)
    diffusers_repo = "model_index.json" in present
    keep = []
    for path in paths:
        if not any(fnmatch.fnmatch(path, pattern) for pattern in ALLOW_PATTERNS):
            continue
        if diffusers_repo and "/" not in path and path.endswith(".safetensors"):
            continue
        plain = _VARIANT.sub("", path)
        if plain != path and plain in present:
            continue
        keep.append(path)
    return keep


class _Puller:
    def __init__(self, hub_url: str, events: ProgressEvents | None, cancel: threading.Event | None,
                 retries: int, client: httpx.Client):
        self.hub = hub_url.rstrip("/")
        self.events, self.cancel, self.retries, self.client = events, cancel, retries, client
        self.done = self.total = self.fetched = 0
        self.started = time.monotonic()
        self.last_event = 0.0
        self.slug = ""

    # -- the hub's shapes ------------------------------------------------------------------------
    def listing(self, repo_id: str) -> list[tuple[str, int | None]]:
        response = self._get(f"{self.hub}/api/models/{repo_id}", params={"blobs": "true"}, what=repo_id)
        try:
            siblings = response.json()["siblings"]
            return [(s["rfilename"], s.get("size")) for s in siblings]
        except (ValueError, KeyError, TypeError) as exc:
            raise DownloadFailed(f"the hub at {self.hub} answered an unreadable file list for {repo_id}") from exc

    def _get(self, url: str, *, what: str, params: dict | None = None) -> httpx.Response:
        try:
            response = self.client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"the hub at {self.hub} can't be reached ({type(exc).__name__}); "
                                 "check the network or IMAGESTUDIO_HUB_URL") from exc
        self._check_status(response, what)
        return response

    def _check_status(self, response: httpx.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise DownloadFailed(f"the hub refused {what} ({response.status_code}): a gated model needs its "
                                 "licence accepted on the hub and a token in HF_TOKEN")
        if response.status_code == 404:
            raise ModelUnavailable(f"the hub at {self.hub} has no {what}")
        if response.status_code >= 400:
            raise DownloadFailed(f"the hub answered {response.status_code} for {what}; try again later")

    # -- progress ----------------------------------------------------------------------------------
    def report(self, file: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.events is None or (not force and now - self.last_event < PROGRESS_EVERY_S):
            return
        self.last_event = now
        elapsed = now - self.started
        rate = self.fetched / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        self.events(PullProgress(done=self.done, total=self.total, rate=rate, seconds_left=left, file=file))

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise PullCancelled(f"the pull of {self.slug} was cancelled with {size_text(self.done)} of "
                                f"{size_text(self.total)} here; `imagestudio models pull {self.slug}` resumes it")

    # -- one file ----------------------------------------------------------------------------------
    def fetch(self, item: HubFile) -> None:
        part = item.target.with_name(item.target.name + ".part")
        item.target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{self.hub}/{item.repo_id}/resolve/main/{quote(item.path)}"
        for attempt in range(self.retries + 1):
            self.check_cancel()
            try:
                self._stream(item, part, url)
                break
            except (httpx.TransportError, _ShortRead) as exc:  # the connection broke: resume where it stopped
                if attempt == self.retries:
                    raise DownloadFailed(f"the download of {item.path} broke off ({type(exc).__name__}); "
                                         f"`imagestudio models pull {self.slug}` resumes it") from exc
                log.warning("download of %s broke off (%s); resuming", item.path, type(exc).__name__)
        os.replace(part, item.target)
        self.report(item.path, force=True)

    def _stream(self, item: HubFile, part: Path, url: str) -> None:
        have = part.stat().st_size if part.exists() else 0
        if item.size is not None and have == item.size:
            return  # a cancelled pull stopped right after its last chunk
        # identity: the bytes on the wire are the file's, so a Range offset is a file offset
        headers = {"Accept-Encoding": "identity"} | ({"Range": f"bytes={have}-"} if have else {})
        with self.client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416:  # the .part is as long as the file, or longer (then start over)
                if item.size is None:
                    return
                part.unlink()
                self.done -= have
                raise _ShortRead(item.path)
            self._check_status(response, item.path)
            if have and response.status_code != 206:  # the server ignored the range: start over
                self.done -= have
                have = 0
            expected = None
            if response.headers.get("content-length") is not None:
                expected = have + int(response.headers["content-length"])
            with open(part, "ab" if have else "wb") as out:
                for chunk in response.iter_bytes():  # as they arrive: a broken connection loses none
                    self.check_cancel()
                    out.write(chunk)
                    have += len(chunk)
                    self.done += len(chunk)
                    self.fetched += len(chunk)
                    self.report(item.path)
        if expected is not None and have < expected or item.size is not None and have < item.size:
            raise _ShortRead(item.path)


class _ShortRead(Exception):
    """The server closed a response before its length: resumed like a broken connection."""


def pull_model(spec: ModelSpec, models_dir: Path, *, hub_url: str = HUB_URL, events: ProgressEvents | None = None,
               cancel: threading.Event | None = None, retries: int = RETRIES) -> Path:
    """Download ``spec``'s files into ``models_dir/<slug>`` (a replacement UNet into ``<slug>-unet``), where
    PipelineManager finds pulled weights; a tiny model is built locally instead. Returns the model's folder."""
    models_dir = Path(models_dir)
    if spec.tiny:
        return ensure_tiny_model(spec.slug, models_dir)
    if not spec.open_weights:
        raise ModelUnavailable(f"'{spec.slug}' is a {spec.unavailable_reason}")
    if spec.local_path:
        return Path(spec.local_path)
    # HF_HUB_OFFLINE=1 means "don't reach the hub over the network": a hub URL on this machine (a local mirror,
    # or the tests' stand-in server) is no network, so only a non-loopback hub is refused.
    if hub_offline() and not is_loopback(hub_url):
        raise ModelUnavailable(f"the hub is offline (HF_HUB_OFFLINE=1); cannot pull {spec.repo_id}")
    headers = {"user-agent": "image-studio"}
    if os.environ.get("HF_TOKEN"):
        headers["authorization"] = f"Bearer {os.environ['HF_TOKEN']}"  # httpx drops it on a cross-host redirect
    with httpx.Client(headers=headers, follow_redirects=True, timeout=httpx.Timeout(30.0, read=60.0)) as client:
        puller = _Puller(hub_url, events, cancel, retries, client)
        puller.slug = spec.slug
        target = models_dir / spec.slug
        listed = dict(puller.listing(spec.repo_id))
        unsafe = [path for path in listed if path.startswith("/") or ".." in path.split("/") or "\\" in path]
        if unsafe:  # a file list that would write outside the model's folder
            raise DownloadFailed(f"the hub at {puller.hub} listed unsafe file names for {spec.repo_id}")
        files = [HubFile(spec.repo_id, path, listed[path], target / path) for path in wanted_files(list(listed))]
        if spec.unet_weights:
            repo, filename = spec.unet_weights
            sizes = dict(puller.listing(repo))
            if filename not in sizes:
                raise ModelUnavailable(f"the hub's {repo} has no {filename}")
            files.append(HubFile(repo, filename, sizes[filename], models_dir / f"{spec.slug}-unet" / filename))
        # model_index.json last: its presence is what marks the folder as a pulled model (local_folder).
        files.sort(key=lambda f: f.path == "model_index.json")
        todo = []
        for item in files:
            part = item.target.with_name(item.target.name + ".part")
            if item.target.exists() and (item.size is None or item.target.stat().st_size == item.size):
                puller.done += item.target.stat().st_size
                puller.total += item.target.stat().st_size
                continue
            puller.done += part.stat().st_size if part.exists() else 0
            puller.total += item.size or 0
            todo.append(item)
        check_disk(spec.slug, models_dir, puller.total - puller.done)
        puller.report(todo[0].path if todo else "", force=True)
        for item in todo:
            puller.fetch(item)
        puller.report("", force=True)
    return target


def check_disk(slug: str, models_dir: Path, needed: int) -> None:
    free = free_disk(models_dir)
    if needed > free:
        raise DiskFull(f"pulling {slug} needs {size_text(needed)} more on the disk of {models_dir}, and only "
                       f"{size_text(free)} is free; free some space (or set IMAGESTUDIO_MODELS_PATH to a bigger "
                       "disk) and pull again")
