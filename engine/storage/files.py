"""Image files on disk. Writes are atomic: a reader never sees half a file."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from engine.errors import EngineError


class StorageError(EngineError):
    code = "storage_error"


def write_atomically(target: Path, data: bytes, *, durable: bool, what: str, owner: str = "") -> None:
    """Write to a hidden temp file beside ``target``, then rename it over: readers see all or nothing.
    ``durable`` also fsyncs, so the file survives a power cut once this returns. The temp file's name carries
    ``owner`` (the writing process's id), so that a process cleaning up after a crash leaves a live one's alone."""
    tmp = target.with_name(f".{target.name}.{owner or secrets.token_hex(6)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the cleanup may fail for the same reason (not a folder...)
            tmp.unlink(missing_ok=True)
        raise StorageError(f"could not write {what}: {exc.strerror or exc}") from exc


PARTIAL_FILE_MAX_AGE_S = 3600  # a write takes milliseconds: an older temp file is left over, whoever wrote it


def temp_file_owner(path: Path) -> str | None:
    """The process id in a temp file's name (``.img_x.png.proc_….tmp``), or None (no owner named)."""
    return next((part for part in path.name.split(".") if part.startswith("proc_")), None)


class ImageStore:
    def __init__(self, root: Path, owner: str = ""):
        self.root = Path(root)
        self.owner = owner  # the process writing through this store

    def save(self, image_id: str, data: bytes, when: str) -> str:
        """Write ``data`` and return its path relative to the root. ``when`` is 'YYYY/MM'."""
        relative = f"{when}/{image_id}.png"
        write_atomically(self.root / relative, data, durable=True, what="the image to storage", owner=self.owner)
        return relative

    def path(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError("image path outside the storage folder")
        return path

    def read(self, relative: str) -> bytes:
        return self.path(relative).read_bytes()

    def delete(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)

    def writable(self) -> bool:
        # A name of its own per check: concurrent health checks sharing one probe file deleted each other's
        # and reported a failing store. ``.tmp``, so a probe left by a crash is cleaned up at the next start.
        probe = self.root / f".probe-{secrets.token_hex(6)}.{self.owner}.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False

    def remove_partial_files(self, dead: Callable[[set[str]], set[str]], now: float | None = None) -> int:
        """Delete temp files left by a crash mid-write: those of processes ``dead`` says are gone, those that
        name no process (earlier versions), and any older than an hour. A live process's are kept."""
        now = time.time() if now is None else now
        partial = list(self.root.rglob(".*.tmp"))
        gone = dead({owner for path in partial if (owner := temp_file_owner(path))})
        count = 0
        for path in partial:
            owner = temp_file_owner(path)
            with contextlib.suppress(FileNotFoundError):  # finished (renamed) meanwhile
                if owner is None or owner in gone or now - path.stat().st_mtime > PARTIAL_FILE_MAX_AGE_S:
                    path.unlink()
                    count += 1
        return count
