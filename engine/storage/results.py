"""Short-lived copies of images that are not stored, so their jobs can still be fetched for a while.

A caller whose plan keeps no images gets the PNG in the response; an asynchronous caller, or one whose
connection dropped, fetches it from GET /jobs/{id}. For that the PNG waits here, one file per job,
until ``ttl_s`` has passed (the engine's housekeeping purges it). Keeping it in the job's database row
instead made every such image a permanent ~1 MB row and cost a few milliseconds of every request.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from engine.storage.files import StorageError, write_atomically


class ResultCache:
    def __init__(self, root: Path, ttl_s: float):
        self.root = Path(root)
        self.ttl_s = ttl_s

    def _path(self, job_id: str) -> Path:
        if not job_id.replace("_", "").isalnum():
            raise StorageError("invalid job id")
        return self.root / f"{job_id}.png"

    def put(self, job_id: str, png: bytes) -> None:
        # Not durable (no fsync): a copy that a crash may lose is fine, the caller got or gets the image itself.
        write_atomically(self._path(job_id), png, durable=False, what="the result")

    def get(self, job_id: str) -> bytes | None:
        """The PNG, or None once it has expired."""
        path = self._path(job_id)
        try:
            if time.time() - path.stat().st_mtime > self.ttl_s:
                return None
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, job_id: str) -> None:
        self._path(job_id).unlink(missing_ok=True)

    def purge(self) -> int:
        """Delete expired results (and, as old, files half-written by a crash); returns how many."""
        cutoff, count = time.time() - self.ttl_s, 0
        if not self.root.is_dir():
            return 0
        for path in self.root.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    count += 1
        return count
