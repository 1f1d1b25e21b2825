"""Which process holds what: work (admissions, jobs) carries its process's id and a lease that the process keeps
renewing. Work whose lease ran out, or whose process is known dead, is abandoned and may be recovered by any
process; a live process's work is never touched.

On one box a process also holds an exclusive lock on a file of its own in the data dir; the lock goes with the
process, even on SIGKILL, so a restart on the same box sees at once that the crashed process is gone instead of
waiting for its leases to run out. Processes on other boxes are judged by their leases alone.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from engine.data.tables import new_id

try:
    import fcntl
except ImportError:  # Windows: leases alone
    fcntl = None

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
HEARTBEAT_S = 15.0  # renewal interval: a lease survives three missed beats


class ProcessIdentity:
    def __init__(self, folder: Path):
        self.id = new_id("proc")
        self.folder = folder
        self._lock = None
        if fcntl is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = open(folder / f"{self.id}.lock", "w")  # noqa: SIM115  (held for the process's life)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            (self.folder / f"{self.id}.lock").unlink(missing_ok=True)
            self._lock = None

    def dead(self, process_ids: set[str]) -> set[str]:
        """The processes among these that ran on this box (their lock file is here) and are gone."""
        if fcntl is None:
            return set()
        gone = set()
        for process_id in process_ids - {self.id}:
            path = self.folder / f"{process_id}.lock"
            if not path.exists():
                continue  # another box's process, or one that stopped cleanly: its leases decide
            with open(path, "w") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # alive
                gone.add(process_id)
            path.unlink(missing_ok=True)
        return gone
