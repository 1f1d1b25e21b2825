"""The desktop window: a child process running pywebview on Qt (the Qt backend installs from PyPI on Linux,
Windows and macOS), showing the studio served by the parent.

It talks to the parent over a pipe. Parent to window: ``show`` (a second launch, or the tray), ``status`` (the
tray's text), ``notify`` (a long job finished), ``close`` (the server is stopping). Window to parent: ``hidden``
(closed, the API keeps serving), ``quit`` (closed, stop everything). Everything Qt happens on this process's main
thread: the pipe is read by a Qt timer there.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import webbrowser
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

log = logging.getLogger("imagestudio.desktop")

OnClose = Literal["ask", "background", "quit"]
PIPE_POLL_MS = 200
WINDOW_SIZE = (1280, 860)
MIN_SIZE = (800, 600)
# A file dropped outside the Generate page's drop zone must not turn the window into a file viewer (a browser
# tab can go back; this window has no address bar). The Generate page's own handler runs first and takes it.
DROP_GUARD_JS = """
(() => {
  if (window.__imagestudioDropGuard) return;
  window.__imagestudioDropGuard = true;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener("drop", (e) => { if (hasFiles(e)) e.preventDefault(); });
})();
"""


@dataclass(frozen=True)
class WindowConfig:
    url: str  # the studio, on loopback (also what "Open in the browser" opens)
    public_url: str  # where the API serves, for the tray's text and the close prompt
    title: str
    icon: str | None
    on_close: OnClose


def run_window(config: WindowConfig, pipe: Connection) -> None:
    """The child process's entry point (multiprocessing's spawn context: nothing of the server is imported)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Chromium (in QtWebEngine) won't start its sandbox as root (a container, CI).
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = (os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
                                                    + " --no-sandbox").strip()
    import webview
    import webview.platforms.qt  # imports QtWebEngine before the QApplication exists, as Qt requires
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName(config.title)
    app.setDesktopFileName("imagestudio")  # the .desktop entry's name: the dock/taskbar groups the window under it
    app.setQuitOnLastWindowClosed(False)  # a hidden window (serving in the background) is not the end
    window = webview.create_window(config.title, config.url, width=WINDOW_SIZE[0], height=WINDOW_SIZE[1],
                                   min_size=MIN_SIZE, text_select=True)
    shell = Shell(window, config, pipe)
    window.events.closing += shell.on_closing
    window.events.loaded += lambda: window.evaluate_js(DROP_GUARD_JS)
    window.events.shown += lambda: log.info("window shown: %s", config.url)
    webview.start(gui="qt", icon=config.icon, private_mode=True)
    shell.tell("quit")  # the window is gone for good (quit, or the parent asked): so is the app


class Shell:
    """The parts around the window: the tray icon, notifications, the close prompt, the pipe to the server."""

    def __init__(self, window, config: WindowConfig, pipe: Connection):
        from qtpy.QtCore import QTimer

        self.window, self.config, self.pipe = window, config, pipe
        self.quitting = False
        self.tray = self._make_tray()
        self.timer = QTimer()
        self.timer.timeout.connect(self._read_pipe)
        self.timer.start(PIPE_POLL_MS)

    def tell(self, *message: str) -> None:
        try:
            self.pipe.send(message)
        except OSError:  # the parent is gone
            pass

    # -- the window closing --------------------------------------------------------------------------------
    def on_closing(self) -> bool:
        """pywebview's ``closing`` event, on the Qt thread: False keeps the window open (here: hides it)."""
        if self.quitting:
            return True
        choice = self.config.on_close if self.config.on_close != "ask" else self._ask_on_close()
        if choice == "cancel":
            return False
        if choice == "background":
            self.window.hide()
            self.tell("hidden")
            self.notify("Still serving", f"The API keeps answering at {self.config.public_url}. "
                        + ("Reopen Image Studio from the tray icon." if self.tray else "Launch Image Studio to reopen "
                           "the window."))
            return False
        self.quitting = True
        self.tell("quit")
        return True

    def _ask_on_close(self) -> str:
        from qtpy.QtWidgets import QMessageBox

        box = QMessageBox()
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(self.config.title)
        box.setText("Keep serving the API in the background?")
        box.setInformativeText(f"Your sites and scripts reach Image Studio at {self.config.public_url}. Keep it "
                               "running without the window, or quit and stop serving them.")
        keep = box.addButton("Keep serving", QMessageBox.ButtonRole.AcceptRole)
        quit_ = box.addButton("Quit", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        clicked = box.clickedButton()
        return "background" if clicked is keep else "quit" if clicked is quit_ else "cancel"

    # -- from the server -------------------------------------------------------------------------------------
    def _read_pipe(self) -> None:
        try:
            while self.pipe.poll():
                self._handle(self.pipe.recv())
        except (EOFError, OSError):  # the server process is gone: nothing left to show
            self._quit_window()

    def _handle(self, message: tuple[str, ...]) -> None:
        kind, *args = message
        if kind == "show":
            self.show()
        elif kind == "status" and self.tray is not None:
            self.tray.setToolTip(f"{self.config.title}: {args[0]}")
            self.status_action.setText(args[0])
        elif kind == "notify":
            self.notify(*args)
        elif kind == "close":
            self._quit_window()

    def show(self) -> None:
        self.window.show()
        self.window.restore()
        browser = getattr(self.window, "native", None)  # the Qt main window: in front, with the focus
        if browser is not None:
            browser.raise_()
            browser.activateWindow()
        log.info("window brought to the front")

    def _quit_window(self) -> None:
        self.quitting = True
        self.timer.stop()
        self.window.destroy()

    # -- tray and notifications ------------------------------------------------------------------------------
    def _make_tray(self):
        from qtpy.QtGui import QAction, QIcon
        from qtpy.QtWidgets import QMenu, QSystemTrayIcon

        if not QSystemTrayIcon.isSystemTrayAvailable():  # no tray on this desktop: the next launch reopens it
            log.info("no system tray here: launching Image Studio again reopens a hidden window")
            return None
        tray = QSystemTrayIcon(QIcon(self.config.icon) if self.config.icon else QIcon())
        tray.setToolTip(self.config.title)
        menu = QMenu()
        self.status_action = QAction("Starting…", menu)
        self.status_action.setEnabled(False)
        menu.addAction(self.status_action)
        menu.addSeparator()
        for text, slot in (("Open Image Studio", self.show),
                           ("Open in the browser", lambda: webbrowser.open(self.config.url)),
                           ("Quit Image Studio", self._quit_from_tray)):
            action = QAction(text, menu)
            action.triggered.connect(slot)
            menu.addAction(action)
        tray.setContextMenu(menu)
        tray.activated.connect(lambda reason: self.show() if reason == QSystemTrayIcon.ActivationReason.Trigger
                               else None)
        tray.show()
        self._menu = menu  # Qt does not own it: keep it alive
        return tray

    def _quit_from_tray(self) -> None:
        self.tell("quit")
        self._quit_window()

    def notify(self, title: str, body: str) -> None:
        log.info("notification: %s: %s", title, body)
        if self.tray is not None:
            self.tray.showMessage(title, body, self.tray.icon(), 8000)
        elif shutil.which("notify-send"):  # a desktop without a tray still has a notification daemon
            subprocess.run(["notify-send", "--app-name", self.config.title, *(["--icon", self.config.icon]
                            if self.config.icon else []), title, body], check=False, timeout=5,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
