"""Dynamic batching: compatible requests share one pipeline call, with the same results as alone."""

import io
import threading

import numpy as np
import pytest
from PIL import Image

from engine.config import Settings
from engine.generation.params import GenerationParams
from engine.generation.worker import LocalWorker, Task
from engine.service import ImageEngine
from tests.conftest import make_user


class FakeClock:
    """Time that only moves when the worker waits: the window is checked without real timing."""

    def __init__(self):
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now


def fake_waiting(worker: LocalWorker, clock: FakeClock, on_wait=None, arrival_after: float = 0.01):
    """Replace the worker's condition wait: with ``on_wait`` a task arrives after ``arrival_after``
    seconds (waking the worker), else the wait runs its full timeout."""

    def wait(timeout=None):
        clock.waits.append(timeout)
        if on_wait:
            clock.now += min(timeout, arrival_after)
            on_wait()
        else:
            clock.now += timeout
        return False

    worker._cond.wait = wait


def batch_task(task_id: str, key, owner: str = "a") -> Task:
    return Task(id=task_id, owner=owner, batch_key=key, run_batch=lambda tasks: None)


def concurrent_worker(clock: FakeClock, **kwargs) -> LocalWorker:
    """A worker whose last call was a batch, so its window is open."""
    worker = LocalWorker(clock=clock, **kwargs)
    worker.last_batch_size = 2
    return worker


def test_a_lone_caller_never_waits():
    clock = FakeClock()
    worker = LocalWorker(max_batch=4, batch_window_s=0.02, clock=clock)  # last call was not a batch
    worker.submit(batch_task("lone", "k"))
    fake_waiting(worker, clock)
    assert [t.id for t in worker._next_batch()] == ["lone"] and clock.waits == []


def test_a_lone_request_waits_at_most_the_window():
    clock = FakeClock()
    worker = concurrent_worker(clock, max_batch=4, batch_window_s=0.02)
    worker.submit(batch_task("lone", "k"))
    fake_waiting(worker, clock)
    batch = worker._next_batch()
    assert [t.id for t in batch] == ["lone"]
    assert sum(clock.waits) <= 0.02 + 1e-9


def test_companions_arriving_within_the_window_join():
    clock = FakeClock()
    worker = concurrent_worker(clock, max_batch=3, batch_window_s=0.05)
    worker.submit(batch_task("first", "k", owner="a"))
    arrivals = iter([batch_task("second", "k", owner="b"), batch_task("third", "k", owner="c")])
    fake_waiting(worker, clock, on_wait=lambda: worker._queues.setdefault(
        (task := next(arrivals)).owner, __import__("collections").deque()).append(task))
    batch = worker._next_batch()
    assert [t.id for t in batch] == ["first", "second", "third"]  # full: no more waiting
    assert len(clock.waits) == 2


def test_incompatible_requests_are_never_held_behind_a_window():
    clock = FakeClock()
    worker = concurrent_worker(clock, max_batch=4, batch_window_s=10.0)
    worker.submit(batch_task("a1", "key-a"))
    worker.submit(batch_task("b1", "key-b", owner="b"))
    fake_waiting(worker, clock)
    assert [t.id for t in worker._next_batch()] == ["a1"]
    assert clock.waits == []  # b1 was waiting, so no window was opened
    assert [t.id for t in worker._next_batch()] == ["b1"]


def test_compatible_tasks_are_taken_across_owners_in_turn():
    worker = LocalWorker(max_batch=3, batch_window_s=0.0)
    for task in (batch_task("a1", "k", "a"), batch_task("a2", "k", "a"), batch_task("a3", "k", "a"),
                 batch_task("b1", "k", "b"), batch_task("c1", "other", "c")):
        worker.submit(task)
    assert [t.id for t in worker._next_batch()] == ["a1", "b1", "a2"]
    assert [t.id for t in worker._next_batch()] == ["c1"]


def test_tasks_without_a_key_run_alone():
    worker = LocalWorker(max_batch=4, batch_window_s=0.0)
    worker.submit(Task(id="edit", owner="a", run=lambda t: None))
    worker.submit(Task(id="edit2", owner="a", run=lambda t: None))
    assert [t.id for t in worker._next_batch()] == ["edit"]


@pytest.fixture
def batching_engine(settings):
    eng = ImageEngine(settings.model_copy(update={"max_batch": 4, "batch_window_ms": 50}))
    eng.start()
    yield eng
    eng.stop()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def queue_behind_a_gate(engine, user, params_list):
    """Hold the worker with a gate task so the requests queue up, then let them all go at once."""
    gate = threading.Event()
    engine.worker.submit(Task(id="gate", owner="gate", run=lambda t: gate.wait(10)))
    tasks = [engine.submit_generation(user, p, store=False) for p in params_list]
    gate.set()
    return [t.future.result(60) for t in tasks], tasks


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-sdxl", "tiny-flux"])
def test_batched_results_equal_unbatched_ones(batching_engine, model):
    user, _ = make_user(batching_engine, f"{model}@example.com")
    requests = [GenerationParams(prompt=prompt, negative_prompt=negative, model=model, width=256, height=256, seed=seed)
                for prompt, negative, seed in (("a red fox", "blurry", 11), ("a lighthouse", None, 22),
                                               ("an owl at night", "text", 33))]
    batched, tasks = queue_behind_a_gate(batching_engine, user, requests)
    # One pipeline call; on FLUX a negative prompt turns on true CFG, so those two batch apart from the third.
    assert [t.batch_size for t in tasks] == ([2, 1, 2] if model == "tiny-flux" else [3, 3, 3])
    alone = [batching_engine.generate(user, p, store=False) for p in requests]  # each by itself
    for one, other in zip(batched, alone, strict=True):
        assert one.params == other.params  # same seed, prompts, size, steps
        difference = np.abs(pixels(one.png) - pixels(other.png))
        # Same pictures; a batched matrix product may round a rare pixel one level differently.
        assert difference.max() <= 1 and difference.mean() < 0.01


def test_one_cancelled_request_does_not_stop_its_batch(batching_engine):
    user, _ = make_user(batching_engine, "c@example.com")
    gate = threading.Event()
    batching_engine.worker.submit(Task(id="gate", owner="gate", run=lambda t: gate.wait(10)))
    keep = batching_engine.submit_generation(user, GenerationParams(prompt="keep", model="tiny-sd", width=256,
                                                                    height=256, seed=1), store=False)
    drop = batching_engine.submit_generation(user, GenerationParams(prompt="drop", model="tiny-sd", width=256,
                                                                    height=256, seed=2), store=False)
    batching_engine.worker.cancel(drop.id)
    gate.set()
    assert keep.future.result(30).params.prompt == "keep"
    with pytest.raises(Exception, match="cancelled"):
        drop.future.result(30)


def test_different_sizes_are_not_batched(batching_engine):
    user, _ = make_user(batching_engine, "d@example.com")
    params = [GenerationParams(prompt="x", model="tiny-sd", width=w, height=256, seed=1) for w in (256, 320)]
    results, tasks = queue_behind_a_gate(batching_engine, user, params)
    assert [t.batch_size for t in tasks] == [1, 1]
    assert [r.params.width for r in results] == [256, 320]


def test_defaults_batch_per_device(settings):
    engine = ImageEngine(settings.model_copy(update={"max_batch": 0}))
    assert engine.worker.max_batch == 8 and 0 < engine.worker.batch_window_s <= 0.05
    assert isinstance(settings, Settings)


def test_fewer_big_images_share_a_call():
    """The per-call pixel budget: on CPU 4 at 256², one from 512²; on a GPU 8 at 1024²."""
    from engine.generation.device import batch_limit

    assert [batch_limit("cpu", s, s) for s in (128, 256, 512, 1024)] == [16, 4, 1, 1]
    assert batch_limit("cuda", 1024, 1024) == 8 and batch_limit("cuda", 2048, 2048) == 2


def test_a_tasks_batch_limit_caps_its_batch():
    from engine.generation.worker import LocalWorker, Task

    worker = LocalWorker(max_batch=8, batch_window_s=0.0)
    sizes = []
    tasks = [Task(id=str(i), owner="o", batch_key="k", batch_limit=3, payload=i,
                  run_batch=lambda batch: [sizes.append(len(batch))] + [t.finish(result=t.payload) for t in batch])
             for i in range(7)]
    for task in tasks:
        worker.submit(task)
    worker.start()
    try:
        assert [t.future.result(10) for t in tasks] == list(range(7))
    finally:
        worker.stop()
    assert max(sizes) == 3 and sum(sizes) == 7


def test_progress_and_previews_reach_the_task(engine):
    user, _ = make_user(engine, "p@example.com")
    task = engine.submit_generation(user, GenerationParams(prompt="x", model="tiny-sd", width=256, height=256,
                                                           steps=3, seed=1), store=False)
    task.future.result(30)
    assert (task.step, task.total) == (3, 3)
    preview = Image.open(io.BytesIO(task.preview))
    assert preview.format == "PNG" and preview.size == (32, 32)  # one pixel per latent
