"""The in-process job worker: one task on the accelerator at a time, owners served in turn.

Routes and the studio only see ``submit() -> Task`` and the task's future, so the
worker can later be replaced by a client of a distributed engine with the same
interface, without touching them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from engine.errors import JobCancelled, QueueFull

log = logging.getLogger(__name__)


@dataclass
class Task:
    id: str
    owner: str
    run: Callable[[Task], Any]
    future: Future = field(default_factory=Future)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    step: int = 0
    total: int = 0
    preview: bytes | None = None  # an intermediate image, where the pipeline gives one
    status: str = "queued"
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def report(self, step: int, total: int) -> bool:
        """Progress hook for the pipeline; returns False once the task was cancelled."""
        self.step, self.total = step, total
        return not self.cancelled


class LocalWorker:
    def __init__(self, max_queue: int = 1000, on_task_done: Callable[[Task], None] | None = None):
        self.max_queue = max_queue
        self._queues: OrderedDict[str, deque[Task]] = OrderedDict()  # owner -> tasks, round-robin order
        self._tasks: dict[str, Task] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.current: Task | None = None
        self.completed = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="imagestudio-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            pending = [t for q in self._queues.values() for t in q]
            self._queues.clear()
            self._cond.notify_all()
        for task in pending:
            task.cancel_event.set()
            task.status = "cancelled"
            task.future.set_exception(JobCancelled("the server is shutting down"))
        if self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def depth(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    # -- tasks -------------------------------------------------------------------------------
    def submit(self, task: Task) -> Task:
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if sum(len(q) for q in self._queues.values()) >= self.max_queue:
                raise QueueFull(f"the generation queue is full ({self.max_queue} jobs); try again shortly")
            self._queues.setdefault(task.owner, deque()).append(task)
            self._tasks[task.id] = task
            self._cond.notify()
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def cancel(self, task_id: str) -> bool:
        """Cancel a queued task at once, or ask a running one to stop at its next step."""
        with self._cond:
            task = self._tasks.get(task_id)
            if task is None or task.future.done():
                return False
            task.cancel_event.set()
            queue = self._queues.get(task.owner)
            if queue is not None and task in queue:
                queue.remove(task)
                if not queue:
                    del self._queues[task.owner]
                task.status = "cancelled"
                task.future.set_exception(JobCancelled("the job was cancelled"))
            return True

    def _next(self) -> Task | None:
        with self._cond:
            while not self._queues and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            owner, queue = next(iter(self._queues.items()))
            task = queue.popleft()
            # The owner goes to the back of the line: one busy caller can't starve the others.
            del self._queues[owner]
            if queue:
                self._queues[owner] = queue
            return task

    def _loop(self) -> None:
        while True:
            task = self._next()
            if task is None:
                return
            self.current = task
            task.status, task.started_at = "running", time.monotonic()
            try:
                result = task.run(task)
            except BaseException as exc:  # the future carries it to the caller
                task.status = "cancelled" if isinstance(exc, JobCancelled) else "failed"
                if not isinstance(exc, JobCancelled):
                    log.debug("task %s failed: %s", task.id, exc)
                task.future.set_exception(exc)
            else:
                task.status = "succeeded"
                task.future.set_result(result)
            finally:
                self.current = None
                self.completed += 1
                # Finished tasks stay findable for a while for progress polling; keep the map bounded.
                if len(self._tasks) > 10_000:
                    for key in [k for k, t in self._tasks.items() if t.future.done()][:5_000]:
                        self._tasks.pop(key, None)
