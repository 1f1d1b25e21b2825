"""The desktop app's main process: the server (the API and the studio, as ``imagestudio serve``) on the main
thread, the window in a child process, a relay thread that opens the window and passes its quit on, and a report
thread that sends it the tray's status and notifications of long jobs."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import uvicorn

from engine.config import Settings
from engine.data.tables import JobStatus, utcnow
from engine.errors import DatabaseBusy
from engine.generation.activity import active_jobs, finished_since
from engine.service import ImageEngine
from studio.desktop.instance import SingleInstance
from studio.desktop.window import WindowConfig, run_window

log = logging.getLogger("imagestudio.desktop")

SPAWN = multiprocessing.get_context("spawn")  # the window's process starts clean (no torch, no server state)
RELAY_TICK_S = 0.25
STATUS_EVERY_S = 2.0
TITLE = "Image Studio"


@dataclass(frozen=True)
class Notice:
    title: str
    body: str


class JobNotices:
    """Jobs that finished since the last look and took at least ``after_s`` (what a person went away from)."""

    def __init__(self, engine: ImageEngine, after_s: float, since: datetime | None = None):
        self.engine, self.after_s = engine, after_s
        self.since = since or utcnow()

    def poll(self) -> list[Notice]:
        notices = []
        for job in finished_since(self.engine, self.since):
            self.since = max(self.since, job.finished_at)
            if job.seconds < self.after_s or job.status == JobStatus.CANCELLED:
                continue
            prompt = job.prompt if len(job.prompt) <= 60 else job.prompt[:59] + "…"
            what = f"“{prompt}” · {job.model} · {job.seconds:.0f} s" if prompt else f"{job.model} · {job.seconds:.0f} s"
            title = "Image ready" if job.status == JobStatus.SUCCEEDED else "Generation failed"
            notices.append(Notice(title, what))
        return notices


class Window:
    """The window's child process and the pipe to it; started again when a launch asks for a window that died."""

    def __init__(self, config: WindowConfig):
        self.config = config
        self.process: multiprocessing.process.BaseProcess | None = None
        self.pipe = None
        self._lock = threading.Lock()  # used from the relay, report and single-instance threads

    def start(self) -> None:
        with self._lock:
            ours, theirs = SPAWN.Pipe()
            self.process = SPAWN.Process(target=run_window, args=(self.config, theirs), name="imagestudio-window",
                                         daemon=True)
            self.process.start()
            theirs.close()
            self.pipe = ours

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def send(self, *message: str) -> None:
        with self._lock:
            if self.pipe is not None:
                try:
                    self.pipe.send(message)
                except OSError:  # the window process is gone
                    pass

    def receive(self) -> list[tuple[str, ...]]:
        messages = []
        with self._lock:
            try:
                while self.pipe is not None and self.pipe.poll():
                    messages.append(self.pipe.recv())
            except (EOFError, OSError):
                self.pipe = None
        return messages

    def show(self) -> None:
        """Bring the window to the front, or open a new one when it is gone."""
        if self.process is None:  # not opened yet: it opens when the server is up
            return
        if self.alive:
            self.send("show")
        else:
            self.start()

    def stop(self, timeout: float = 10) -> None:
        self.send("close")
        if self.process is not None:
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.terminate()


class DesktopServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self):
        """Ctrl-C and SIGTERM stop the server, then the window closes and the process exits 0 (uvicorn's own
        handling raises the signal again after shutdown, which would end the process before that)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def studio_url(host: str, port: int) -> str:
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # the window is on this machine
    return f"http://{local}:{port}/"


def run_desktop(settings: Settings, host: str, port: int, log_level: str = "info") -> int | None:
    """Run until the window's Quit (or Ctrl-C / SIGTERM) and return the exit status; None at once when another
    app on this data dir was there (it was asked to show its window)."""
    from api.app import create_app

    window: Window | None = None
    instance = SingleInstance.claim(settings.data_dir, on_focus=lambda: window.show() if window else None)
    if instance is None:
        return None
    try:
        public_url = (settings.public_url or f"http://{host}:{port}").rstrip("/")
        config = WindowConfig(url=studio_url(host, port), public_url=public_url, title=TITLE, icon=_icon_path(),
                              on_close=settings.desktop_on_close)
        window = Window(config)
        engine = ImageEngine(settings)
        server = DesktopServer(uvicorn.Config(create_app(settings, engine, with_studio=True), host=host, port=port,
                                               log_level=log_level, **settings.uvicorn_proxy_options()))
        threading.Thread(target=_relay, args=(server, window, public_url), name="desktop-relay", daemon=True).start()
        threading.Thread(target=_report, args=(server, window, engine, settings, public_url), name="desktop-report",
                         daemon=True).start()
        server.run()  # on the main thread, where Ctrl-C and SIGTERM stop it
        window.stop()
        return 0 if server.started else 1
    finally:
        instance.close()


def _relay(server, window: Window, public_url: str) -> None:
    """Opens the window once the server answers, then passes the window's quit on to the server."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(RELAY_TICK_S)
    window.start()
    was_alive = True
    while not server.should_exit:
        alive = window.alive  # read before the messages: a window that quit has said so by the time it is gone
        for kind, *_ in window.receive():
            if kind == "quit":
                log.info("the window quit: stopping the server")
                server.should_exit = True
            elif kind == "hidden":
                log.info("window closed; still serving at %s", public_url)
        if was_alive and not alive and not server.should_exit:  # gone without a quit: a crash, or no display
            log.warning("the window closed unexpectedly (exit code %s); the API keeps serving at %s, and launching "
                        "Image Studio again opens a new window", window.process.exitcode, public_url)
        was_alive = alive
        time.sleep(RELAY_TICK_S)


def _report(server, window: Window, engine: ImageEngine, settings: Settings, public_url: str) -> None:
    """The tray's text and the notifications: database reads, on a thread of their own so that a database
    that is away never holds up the window's quit."""
    notices = JobNotices(engine, settings.desktop_notify_after_s)
    while not server.should_exit:
        time.sleep(STATUS_EVERY_S)
        try:
            running = len(active_jobs(engine, None))
            found = notices.poll()
        except DatabaseBusy:  # a long write elsewhere: the next look sees it
            continue
        window.send("status", f"Serving at {public_url} · {running} running" if running else f"Serving at {public_url}")
        for notice in found:
            window.send("notify", notice.title, notice.body)


def _icon_path() -> str | None:
    from assets import icon_png

    path = icon_png(256)
    return str(path) if path.exists() else None
