"""Image files on disk. Writes are atomic: a reader never sees half a file."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from engine.errors import EngineError


class StorageError(EngineError):
    code = "storage_error"


def write_atomically(target: Path, data: bytes, *, durable: bool, what: str) -> None:
    """Write to a hidden temp file beside ``target``, then rename it over: readers see all or nothing.
    ``durable`` also fsyncs, so the file survives a power cut once this returns."""
    tmp = target.with_name(f".{target.name}.tmp")
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


class ImageStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def save(self, image_id: str, data: bytes, when: str) -> str:
        """Write ``data`` and return its path relative to the root. ``when`` is 'YYYY/MM'."""
        relative = f"{when}/{image_id}.png"
        write_atomically(self.root / relative, data, durable=True, what="the image to storage")
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
        probe = self.root / f".probe-{secrets.token_hex(6)}.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False

    def remove_partial_files(self) -> int:
        """Delete temp files left by a crash mid-write."""
        count = 0
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            count += 1
        return count
