import threading

import pytest

from engine.errors import JobCancelled, QueueFull
from engine.generation.worker import LocalWorker, Task


def test_owners_are_served_in_turn():
    worker = LocalWorker()
    gate = threading.Event()
    order: list[str] = []
    blocker = worker.submit(Task(id="block", owner="x", run=lambda t: gate.wait(5)))
    worker.start()
    tasks = [worker.submit(Task(id=f"{owner}{i}", owner=owner, run=lambda t: order.append(t.id)))
             for owner, count in (("a", 3), ("b", 2), ("c", 1)) for i in range(count)]
    gate.set()
    for task in [blocker, *tasks]:
        task.future.result(5)
    worker.stop()
    # "a" queued three first, yet b and c are not starved behind them.
    assert order == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_cancel_a_queued_task_and_a_running_one():
    worker = LocalWorker()
    started, release = threading.Event(), threading.Event()

    def long_run(task):
        started.set()
        release.wait(5)
        if task.cancelled:
            raise JobCancelled("stopped at a step")
        return "done"

    running = worker.submit(Task(id="run", owner="a", run=long_run))
    queued = worker.submit(Task(id="queued", owner="a", run=lambda t: "never"))
    worker.start()
    assert started.wait(5)
    assert worker.cancel("queued") and worker.cancel("run")
    release.set()
    with pytest.raises(JobCancelled):
        queued.future.result(5)
    with pytest.raises(JobCancelled):
        running.future.result(5)
    assert not worker.cancel("run")  # already finished
    worker.stop()


def test_errors_reach_the_caller_and_the_worker_goes_on():
    worker = LocalWorker()
    worker.start()
    failing = worker.submit(Task(id="f", owner="a", run=lambda t: 1 / 0))
    fine = worker.submit(Task(id="g", owner="a", run=lambda t: 42))
    with pytest.raises(ZeroDivisionError):
        failing.future.result(5)
    assert fine.future.result(5) == 42 and worker.alive
    worker.stop()


def test_queue_is_bounded():
    worker = LocalWorker(max_queue=2)
    worker.submit(Task(id="1", owner="a", run=lambda t: None))
    worker.submit(Task(id="2", owner="b", run=lambda t: None))
    with pytest.raises(QueueFull):
        worker.submit(Task(id="3", owner="c", run=lambda t: None))
    worker.stop()


def test_cancelled_job_is_recorded_and_its_callbacks_run_outside_the_lock(engine):
    from engine.data.db import session_scope
    from engine.data.tables import Job
    from engine.generation.params import GenerationParams
    from tests.conftest import make_user

    user, _ = make_user(engine, "q@example.com")
    gate, holding = threading.Event(), threading.Event()

    def hold(_task):
        holding.set()
        gate.wait(10)

    engine.worker.submit(Task(id="gate", owner="gate", run=hold))
    assert holding.wait(10)  # the worker is busy: the next job stays queued
    task = engine.submit_generation(user, GenerationParams(prompt="x", model="tiny-sd", width=256, height=256))
    seen = []
    # A callback that needs the worker (as refunds and polling do) must not deadlock.
    task.future.add_done_callback(lambda f: seen.append(engine.worker.depth()))
    assert engine.cancel_job(task.id)
    gate.set()
    assert seen == [0]
    with session_scope(engine.db) as session:
        assert session.get(Job, task.id).status == "cancelled"
    assert not engine.cancel_job(task.id)


def test_the_idle_hook_runs_once_after_work_when_nothing_is_queued():
    """The engine gives the pipeline's freed working memory back there: once per idle spell, never mid-work."""
    import threading

    from engine.generation.worker import LocalWorker, Task

    idle = threading.Event()
    calls = []
    worker = LocalWorker(idle_hook=lambda: (calls.append(1), idle.set()), idle_after_s=0.05)
    worker.start()
    try:
        assert not idle.wait(0.3)  # no work yet: nothing to give back
        task = worker.submit(Task(id="a", owner="o", run=lambda t: "done"))
        assert task.future.result(10) == "done"
        assert idle.wait(5)
        idle.clear()
        assert not idle.wait(0.3) and calls == [1]  # once, not every idle_after_s
    finally:
        worker.stop()
