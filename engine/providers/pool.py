"""Threads for jobs that wait on a vendor: seconds to minutes of polling that must not hold the GPU worker."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from engine.errors import JobCancelled, QueueFull
from engine.generation.worker import Task

log = logging.getLogger(__name__)


class ProviderPool:
    """The worker interface (submit, get, cancel, depth) over a bounded thread pool; each task runs its ``run``."""

    def __init__(self, max_workers: int = 8, max_queue: int = 200):
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="imagestudio-provider")
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def submit(self, task: Task) -> Task:
        with self._lock:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if sum(not t.future.done() for t in self._tasks.values()) >= self.max_queue:
                raise QueueFull(f"{self.max_queue} vendor jobs are already waiting; try again shortly")
            self._tasks[task.id] = task
        self._pool.submit(self._run, task)
        return task

    def _run(self, task: Task) -> None:
        try:
            if task.cancelled:
                raise JobCancelled("the job was cancelled")
            task.status = "running"
            task.finish(result=task.run(task))
        except BaseException as exc:  # noqa: BLE001  (the future carries it to the caller)
            task.finish(error=exc)
        finally:
            with self._lock:
                if len(self._tasks) > 1000:
                    for job_id in [k for k, t in self._tasks.items() if t.future.done()][:500]:
                        self._tasks.pop(job_id, None)

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def cancel(self, task_id: str) -> bool:
        """A queued task ends at once; a running one at its next poll (and at the vendor, where it allows)."""
        task = self._tasks.get(task_id)
        if task is None or task.future.done():
            return False
        task.cancel_event.set()
        if task.status == "queued":
            task.finish(error=JobCancelled("the job was cancelled"))
        return True

    def depth(self) -> int:
        with self._lock:
            return sum(t.status == "queued" and not t.future.done() for t in self._tasks.values())

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            pending = [t for t in self._tasks.values() if not t.future.done()]
        for task in pending:
            task.cancel_event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for task in pending:
            task.finish(error=JobCancelled("the server is shutting down"))
