"""``imagestudio desktop`` for real: the window (pywebview on Qt) on a virtual screen (Debian's Xvfb, which
.ci/run installs), the first run and a generation through the window's page, a file dropped on it, the API
answering on its port meanwhile; closing the window keeps the API serving, and a second launch brings the first
app's window back.

The window's page is driven over the Chrome DevTools protocol of its QtWebEngine (QTWEBENGINE_REMOTE_DEBUGGING).
Its screenshot goes to docs/screenshots/desktop.png with IMAGESTUDIO_SCREENSHOTS_DIR=docs/screenshots."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import save_png, screenshots_folder
from tests.server_process import ROOT, create_key, free_port, server_env, stop_process
from tests.support import require, wait_until

# One real desktop app per module (its start is the slow part); the database under it is the engine's, which
# the API tests run on PostgreSQL.
pytestmark = pytest.mark.sqlite_pass_only

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"
SCREEN = (1440, 1000)


@pytest.fixture(scope="module")
def display():
    """A virtual X screen of its own (a free display number)."""
    xvfb = shutil.which("Xvfb")
    require(xvfb is not None, "Debian's xvfb")
    try:
        import webview  # noqa: F401
        from qtpy import QtWebEngineWidgets  # noqa: F401
    except ImportError:
        require(False, "pywebview with PyQt6 and QtWebEngine (the desktop extra)")
    number = next(n for n in itertools.count(90) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen([xvfb, f":{number}", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.1)
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


class DevTools:
    """Just enough of the DevTools protocol: evaluate JavaScript, type, drop files, on the window's page."""

    def __init__(self, port: int, timeout: float = 120):
        from websockets.sync.client import connect

        deadline = time.monotonic() + timeout
        while True:
            try:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json", timeout=2).json()
                         if t["type"] == "page" and t["url"].startswith("http")]
                if pages:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the window's page did not open"
            time.sleep(0.3)
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=20)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call_id:
                assert "error" not in message, message
                return message["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def until(self, expression: str, timeout: float = 30, what: str = ""):
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            if time.monotonic() >= deadline:  # say what the page shows instead
                shown = self.js("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise AssertionError(f"not in time: {what or expression}; the page shows:\n{shown}")
            time.sleep(0.2)
        return value

    def visible(self, testid: str) -> str:
        return f'(() => {{ const e = document.querySelector(\'[data-testid="{testid}"]\'); ' \
               f'return !!e && e.getClientRects().length > 0; }})()'

    def wait(self, testid: str, timeout: float = 30) -> None:
        self.until(self.visible(testid), timeout, testid)

    def type(self, testid: str, text: str) -> None:
        """Focus the field and type into it as a keyboard would (Quasar's inputs see real input events)."""
        self.wait(testid)
        self.js(f'(() => {{ const e = document.querySelector(\'[data-testid="{testid}"]\'); '
                f'const f = e.matches("input, textarea") ? e : e.querySelector("input, textarea"); '
                f'f.focus(); f.select(); }})()')
        self.call("Input.insertText", text=text)

    def click(self, testid: str) -> None:
        self.wait(testid)
        self.js(f'document.querySelector(\'[data-testid="{testid}"]\').click()')

    def drop_file(self, path: Path) -> None:
        """A file dragged from the desktop and dropped in the middle of the window, through the browser's own
        drag-and-drop (not a synthetic DOM event)."""
        x, y = self.js("[innerWidth / 2, innerHeight / 2]")
        data = {"items": [], "files": [str(path)], "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            self.call("Input.dispatchDragEvent", type=kind, x=x, y=y, data=data)


class Desktop:
    """``imagestudio desktop`` in a subprocess, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path, port: int):
        self.env, self.log, self.port = env, log, port
        self.base = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "api.cli", "desktop", "--port", str(self.port), "--log-level", "warning"]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, needle: str, timeout: float) -> bool:
        """Whether ``needle`` is in the log within ``timeout`` (False at once if the app exits)."""
        return wait_until(lambda: needle in self.text() or self.proc.poll() is not None, timeout) \
            and needle in self.text()

    def wait_for_log(self, needle: str, timeout: float = 30) -> None:
        found = self.logged(needle, timeout)
        assert found or self.proc.poll() is None, f"the desktop app exited:\n{self.text()[-3000:]}"
        assert found, f"{needle!r} not logged:\n{self.text()[-3000:]}"

    def stop(self) -> int:
        return stop_process(self.proc, 30)


@pytest.fixture(scope="module")
def desktop(display, models_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("desktop")
    devtools_port = free_port()
    env = server_env(folder / "data", models_dir, DISPLAY=display, QTWEBENGINE_REMOTE_DEBUGGING=str(devtools_port),
                     IMAGESTUDIO_DESKTOP_NOTIFY_AFTER_S="0", IMAGESTUDIO_DESKTOP_ON_CLOSE="background",
                     XDG_RUNTIME_DIR=str(folder))
    app = Desktop(env, folder / "desktop.log", free_port())
    app.devtools = DevTools(devtools_port)
    yield app
    assert app.stop() == 0, app.text()[-3000:]


def window_geometry(display: str) -> tuple[int, int, int, int]:
    out = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "Image Studio",
                          "getwindowgeometry", "--shell"], env=os.environ | {"DISPLAY": display},
                         capture_output=True, text=True, timeout=30, check=True).stdout
    values = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def test_the_window_runs_the_studio_while_the_api_serves(desktop, display, tmp_path):
    page = desktop.devtools
    # A fresh install: the window opens on first run, where the admin account is made.
    page.wait("create-admin", 60)
    for testid, text in (("name", "Ada Lovelace"), ("email", EMAIL), ("password", PASSWORD),
                         ("confirm", PASSWORD)):
        page.type(testid, text)
    page.click("create-admin")
    page.wait("prompt", 60)

    # Generate through the window's page; the API answers on its port meanwhile, to another caller.
    page.type("prompt", "a lighthouse on a cliff at dusk")
    page.click("generate")
    key = create_key(desktop.env, "site@example.com")
    response = httpx.post(f"{desktop.base}/api/v1/generate", headers={"Authorization": f"Bearer {key}"},
                          json={"prompt": "a red fox", "model": "tiny-sd", "width": 256, "height": 256}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["image"]
    # seconds alone on 2 cores; once, beside the other test worker's 1024² upscale, over 90 s (a wait, not a timing)
    page.until('(() => { const i = document.querySelector(\'[data-testid="result-image"] img\'); '
               'return !!i && i.complete && i.naturalWidth > 0; })()', 240, "the generated image")
    assert page.js('document.querySelector(\'[data-testid="result-image"] img\').src') \
        .startswith("data:image/png;base64,")
    desktop.wait_for_log("notification: Image ready")  # a desktop notification when the job finished

    # The window, as a person sees it.
    time.sleep(0.5)  # the image's fade-in
    from PIL import ImageGrab

    x, y, width, height = window_geometry(display)
    shot = ImageGrab.grab(xdisplay=display).crop((max(x, 0), max(y, 0), min(x + width, SCREEN[0]),
                                                  min(y + height, SCREEN[1])))
    buffer = io.BytesIO()
    shot.save(buffer, "PNG")
    save_png(buffer.getvalue(), screenshots_folder(tmp_path) / "desktop.png")
    assert shot.size[0] > 600 and len(set(shot.getdata())) > 50  # a rendered page, not a blank window

    # A picture dragged from the desktop onto the window lands in the Generate page's edit panel.
    picture = tmp_path / "dropped.png"
    picture.write_bytes(_png())
    page.drop_file(picture)
    page.wait("edit-source", 30)
    assert page.js("location.pathname") == "/"  # the window did not navigate to the file


def test_closing_keeps_serving_and_a_second_launch_brings_the_window_back(desktop, display):
    close_window(display)  # the window manager's close button (WM_DELETE_WINDOW)
    if not desktop.logged("notification: Still serving", timeout=15):
        # Seen once on a loaded 2-core machine: the close went unanswered (cause not found). Say what was on the
        # screen, and press the close button again, as a person would.
        print("close unanswered; windows:", visible_windows(display), file=sys.stderr)
        close_window(display)
    desktop.wait_for_log("notification: Still serving")  # and the person is told so
    assert not visible_windows(display)
    assert httpx.get(f"{desktop.base}/api/v1/health", timeout=10).status_code == 200  # serving in the background

    second = subprocess.run(desktop.command(), env=desktop.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout
    desktop.wait_for_log("window brought to the front")
    deadline = time.monotonic() + 20
    while not visible_windows(display):
        assert time.monotonic() < deadline, "the window did not come back"
        time.sleep(0.2)
    assert desktop.proc.poll() is None  # one app: the first


def visible_windows(display: str) -> list[int]:
    out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "Image Studio"], capture_output=True,
                         text=True, env=os.environ | {"DISPLAY": display}, timeout=30, check=False).stdout
    return [int(line) for line in out.split()]


_SEND_WM_DELETE = """
import sys
from Xlib import X, protocol
from Xlib.display import Display

screen = Display(sys.argv[1])
window = screen.create_resource_object("window", int(sys.argv[2]))
protocols, delete = screen.intern_atom("WM_PROTOCOLS"), screen.intern_atom("WM_DELETE_WINDOW")
window.send_event(protocol.event.ClientMessage(window=window, client_type=protocols,
                                               data=(32, [delete, X.CurrentTime, 0, 0, 0])))
screen.flush()
screen.close()
"""


def close_window(display: str) -> None:
    """What a window manager sends when its close button is pressed (Xvfb has no window manager).

    In a process of its own: python-xlib waits with select(), which can't take the descriptor numbers above 1024
    that a long test session's process may be handing out by now."""
    (window_id,) = visible_windows(display)
    subprocess.run([sys.executable, "-c", _SEND_WM_DELETE, display, str(window_id)], timeout=30, check=True)


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()
