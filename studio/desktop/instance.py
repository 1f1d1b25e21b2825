"""One desktop app per data dir: the first launch listens on a local socket (a named pipe on Windows); a later
launch finds it there, asks it to bring its window to the front, and exits.

The socket's authkey is a file in the data dir readable only by its owner, so another user on the machine can't
drive the app."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path

log = logging.getLogger(__name__)

FOCUS = "focus"
REPLY_TIMEOUT_S = 10.0


def _address(data_dir: Path) -> tuple[str, str]:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    if sys.platform == "win32":
        return rf"\\.\pipe\imagestudio-{digest}", "AF_PIPE"
    if sys.platform.startswith("linux"):
        return f"\0imagestudio-{digest}", "AF_UNIX"  # abstract: no socket file left behind by a crash
    return str(data_dir / "desktop.sock"), "AF_UNIX"


def _authkey(data_dir: Path) -> bytes:
    path = data_dir / "desktop.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    partial = path.with_name(f".desktop.key.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    try:
        os.link(partial, path)  # whole or not at all; a launch that raced this one and won keeps its key
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        partial.unlink()
    return bytes.fromhex(key)


def ask_running_to_focus(data_dir: Path) -> bool:
    """True when an app already runs on ``data_dir`` and has brought its window to the front."""
    address, family = _address(data_dir)
    try:
        conn = Client(address, family=family, authkey=_authkey(data_dir))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    with conn:
        try:
            conn.send(FOCUS)
            return conn.poll(REPLY_TIMEOUT_S) and conn.recv() == "ok"
        except (EOFError, OSError):  # it is closing
            return False


class SingleInstance:
    """Holds the data dir's desktop socket; ``on_focus`` runs (on the listener's thread) when a later launch asks."""

    def __init__(self, listener: Listener, on_focus: Callable[[], None], data_dir: Path):
        self._listener = listener
        self._on_focus = on_focus
        self._data_dir = data_dir
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="desktop-instance", daemon=True)
        self._thread.start()

    @classmethod
    def claim(cls, data_dir: Path, on_focus: Callable[[], None]) -> SingleInstance | None:
        """This launch's claim on ``data_dir``; None when another app holds it (and was asked to focus)."""
        address, family = _address(data_dir)
        authkey = _authkey(data_dir)
        for _ in range(2):
            try:
                return cls(Listener(address, family=family, authkey=authkey), on_focus, data_dir)
            except OSError:  # taken: by a live app, or (a socket file) by one that died
                if ask_running_to_focus(data_dir):
                    return None
                if family == "AF_UNIX" and not address.startswith("\0"):
                    Path(address).unlink(missing_ok=True)
        raise RuntimeError(f"the desktop app's socket for {data_dir} is held by something that does not answer")

    def _serve(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except (EOFError, OSError):  # a caller that hung up mid-handshake
                if self._closed:
                    return
                continue
            except AuthenticationError:  # a caller without the key
                log.warning("refused a connection to the desktop app that did not have its key")
                continue
            if self._closed:  # close()'s own wake-up call
                conn.close()
                return
            self._answer(conn)

    def _answer(self, conn: Connection) -> None:
        with conn:
            try:
                if conn.poll(REPLY_TIMEOUT_S) and conn.recv() == FOCUS:
                    self._on_focus()
                    conn.send("ok")
            except (EOFError, OSError):
                pass

    def close(self) -> None:
        """Stop answering. A thread blocked in accept() keeps the socket listening, so it is woken by one last
        connection of our own first."""
        self._closed = True
        address, family = _address(self._data_dir)
        try:
            Client(address, family=family, authkey=_authkey(self._data_dir)).close()
        except OSError:
            pass
        self._thread.join(REPLY_TIMEOUT_S)
        self._listener.close()
