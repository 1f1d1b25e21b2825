"""The in-process job worker: one pipeline call on the accelerator at a time, owners served in turn,
compatible requests run together as one batched call.

Routes and the studio only see ``submit() -> Task`` and the task's future, so the worker can
later be replaced by a client of a distributed engine with the same interface, without
touching them.

Batching: when the worker picks a task that has a ``batch_key``, it also takes queued tasks with
the same key (up to ``max_batch``, and the task's own ``batch_limit``: fewer big images fit a call). If the batch is not full, nothing else is waiting and the
previous call was a batch (callers are arriving together), it waits up to ``batch_window_s`` for
companions. It never waits while an incompatible task is queued, so no request is delayed behind
a window it cannot join, and a lone caller sending one request at a time never waits at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from engine.errors import JobCancelled, QueueFull

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Task:
    id: str
    owner: str
    run: Callable[[Task], Any] | None = None  # runs one task, returns its result
    batch_key: Hashable | None = None  # tasks with equal keys may run together
    batch_limit: int = 0  # most tasks of its key in one call (its size on its device); 0 = the worker's max_batch
    run_batch: Callable[[list[Task]], None] | None = None  # runs several; sets each task's future itself
    payload: Any = None  # what run_batch needs to know about this task (a GenerationJob)
    inputs: Any = None  # an edit's (images, mask, strength), for workers that run it elsewhere (Ray)
    remote: bool = False  # it waits on a vendor's API (engine/providers): the provider pool runs it
    future: Future = field(default_factory=Future)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    step: int = 0
    total: int = 0
    preview_source: Callable[[], bytes] | None = None  # renders the latest intermediate image, on demand
    status: str = "queued"
    batch_size: int = 1
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None

    @property
    def preview(self) -> bytes | None:
        """The latest intermediate image, where the pipeline gives one (rendered only when asked for)."""
        source = self.preview_source
        return source() if source else None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def report(self, step: int, total: int) -> bool:
        """Progress hook for the pipeline; returns False once the task was cancelled."""
        self.step, self.total = step, total
        return not self.cancelled

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.future.done():
            return
        if error is None:
            self.status = "succeeded"
            self.future.set_result(result)
        else:
            self.status = "cancelled" if isinstance(error, JobCancelled) else "failed"
            self.future.set_exception(error)


class LocalWorker:
    def __init__(self, max_queue: int = 1000, max_batch: int = 1, batch_window_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, idle_hook: Callable[[], object] | None = None,
                 idle_after_s: float = 2.0):
        self.max_queue = max_queue
        # Run once the worker has had nothing to do for idle_after_s after some work: the engine gives the
        # pipeline's freed working memory back to the system there (engine/generation/device.py).
        self.idle_hook, self.idle_after_s = idle_hook, idle_after_s
        self._worked = False
        self.max_batch = max(1, max_batch)
        self.batch_window_s = max(0.0, batch_window_s)
        self._clock = clock
        self._queues: OrderedDict[str, deque[Task]] = OrderedDict()  # owner -> tasks, round-robin order
        self._tasks: dict[str, Task] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.current: list[Task] = []
        self.completed = 0
        self.batches = 0
        self.last_batch_size = 0  # the window opens only after a batched call: there is concurrency

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
            task.finish(error=JobCancelled("the server is shutting down"))
        if self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def depth(self) -> int:
        with self._cond:
            return self._depth()

    def _depth(self) -> int:
        return sum(len(q) for q in self._queues.values())

    # -- tasks -------------------------------------------------------------------------------
    def submit(self, task: Task) -> Task:
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if self._depth() >= self.max_queue:
                raise QueueFull(f"the generation queue is full ({self.max_queue} jobs); try again shortly")
            self._queues.setdefault(task.owner, deque()).append(task)
            self._tasks[task.id] = task
            self._cond.notify_all()
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
            was_queued = queue is not None and task in queue
            if was_queued:
                queue.remove(task)
                if not queue:
                    del self._queues[task.owner]
        if was_queued:  # outside the lock: the future's callbacks may take their time
            task.finish(error=JobCancelled("the job was cancelled"))
        return True

    # -- choosing what runs next -------------------------------------------------------------
    def _pop_next(self) -> Task:
        owner, queue = next(iter(self._queues.items()))
        task = queue.popleft()
        # The owner goes to the back of the line: one busy caller can't starve the others.
        del self._queues[owner]
        if queue:
            self._queues[owner] = queue
        return task

    def _take_compatible(self, key: Hashable, room: int) -> list[Task]:
        """Up to ``room`` queued tasks with ``key``, one per owner per round, owners in turn."""
        taken: list[Task] = []
        while len(taken) < room:
            took_any = False
            for owner in list(self._queues):
                queue = self._queues[owner]
                match = next((t for t in queue if t.batch_key == key), None)
                if match is None:
                    continue
                queue.remove(match)
                if not queue:
                    del self._queues[owner]
                taken.append(match)
                took_any = True
                if len(taken) == room:
                    break
            if not took_any:
                break
        return taken

    def _next_batch(self) -> list[Task]:
        with self._cond:
            while not self._queues and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return []
            batch = [self._pop_next()]
            key = batch[0].batch_key
            if key is None or self.max_batch == 1 or batch[0].run_batch is None:
                return batch
            limit = min(self.max_batch, batch[0].batch_limit or self.max_batch)
            window = self.batch_window_s if self.last_batch_size > 1 else 0.0
            deadline = self._clock() + window
            while len(batch) < limit:
                batch += self._take_compatible(key, limit - len(batch))
                if len(batch) >= limit or self._queues or self._stopping:
                    break  # full, or others are waiting: don't hold them behind this window
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return batch

    def _idle(self) -> bool:
        """Wait up to idle_after_s for work; True when none came (and the worker is not stopping)."""
        with self._cond:
            return not self._cond.wait_for(lambda: self._queues or self._stopping, self.idle_after_s)

    def _loop(self) -> None:
        while True:
            if self.idle_hook is not None and self._worked and self._idle():
                self._worked = False
                self.idle_hook()
            batch = self._next_batch()
            if not batch:
                return
            self.current = batch
            self.last_batch_size = len(batch)
            self._worked = True
            now = time.monotonic()
            for task in batch:
                task.status, task.started_at, task.batch_size = "running", now, len(batch)
            try:
                if len(batch) == 1 and batch[0].run is not None:
                    task = batch[0]
                    try:
                        task.finish(result=task.run(task))
                    except BaseException as exc:  # the future carries it to the caller
                        task.finish(error=exc)
                else:
                    self._run_batch(batch)
            finally:
                self.current = []
                self.completed += len(batch)
                self.batches += 1
                # Finished tasks stay findable for progress polling for a while; keep the map bounded.
                if len(self._tasks) > 10_000:
                    for task_id in [k for k, t in self._tasks.items() if t.future.done()][:5_000]:
                        self._tasks.pop(task_id, None)

    @staticmethod
    def _run_batch(batch: list[Task]) -> None:
        try:
            batch[0].run_batch(batch)
        except BaseException as exc:
            for task in batch:
                task.finish(error=exc)
        for task in batch:  # a runner that forgot a task must not leave its caller waiting forever
            task.finish(error=RuntimeError("the batch runner gave no result for this task"))
