"""Async jobs as data: a job whose process died is claimed by another and run from its row, once; a second loss
fails it and gives its charge back; nothing is charged twice. (The same with real processes and SIGKILL:
tests/reliability/test_crash_recovery.py and test_two_processes.py.)"""

import threading
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import update
from sqlmodel import select

from engine.data.db import session_scope
from engine.data.leases import LEASE
from engine.data.tables import ImageRecord, Job, JobStatus, PendingCharge, Workspace, utcnow
from engine.generation.jobs import GenerationJob
from engine.generation.params import GenerationParams
from engine.generation.resumable import AsyncJob, input_refs, job_request, png_bytes
from engine.service import ImageEngine
from tests.api.helpers import set_plan, set_workspace
from tests.conftest import make_user
from tests.support import wait_until

COST = 1


@pytest.fixture
def member(engine):
    user, _ = make_user(engine, "sam@example.com", plan="free")
    set_plan(engine, user, storage_enabled=True, storage_quota_mb=100)
    set_workspace(engine, user, credits=10)
    return user


def abandoned_job(engine, user, *, image: Image.Image | None = None, attempts: int = 0) -> str:
    """An async job with its charge, as a process that has just died leaves them: running, its lease run out."""
    params = engine.prepare(GenerationParams(prompt="a harbour at dawn", model="tiny-sd", width=256, height=256,
                                             seed=11))
    admission = engine.meter.admit(user.workspace_id, requests=1, credits=COST)
    kind = "edit" if image is not None else "generate"
    job = GenerationJob(user=user, params=params, store=True, kind=kind, charge_id=admission.charge_id, cost=COST,
                        strength=0.6 if image is not None else None)
    row = Job(user_id=user.id, kind=kind, params=params.as_dict(), status=JobStatus.RUNNING, process_id="proc_gone",
              lease_expires_at=utcnow() - timedelta(seconds=1), attempts=attempts)
    inputs, _ = input_refs(row.id, 1 if image is not None else 0, mask=False)
    for ref in inputs:
        engine.inputs.put(ref, png_bytes(image))
    row.request = job_request(job, AsyncJob(webhook=None, base_url="http://box"), inputs, None, 0.6)
    with session_scope(engine.db) as session:
        session.add(row)
        session.exec(update(PendingCharge).where(PendingCharge.id == admission.charge_id)
                     .values(process_id="proc_gone", lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    return row.id


def job_row(engine, job_id) -> Job:
    with session_scope(engine.db) as session:
        return session.get(Job, job_id)


def balance(engine, user) -> int:
    with session_scope(engine.db) as session:
        return session.get(Workspace, user.workspace_id).credits


def charges(engine) -> list[PendingCharge]:
    with session_scope(engine.db) as session:
        return list(session.exec(select(PendingCharge)).all())


def finished(engine, job_id) -> Job:
    assert wait_until(lambda: job_row(engine, job_id).status in (JobStatus.SUCCEEDED, JobStatus.FAILED), 60)
    return job_row(engine, job_id)


def test_an_async_job_of_a_dead_process_runs_here_and_is_charged_once(engine, member):
    announced = []
    engine.resumed_job_ended = lambda task, future, request: announced.append((task.id, future.result().image_id))
    job_id = abandoned_job(engine, member)
    assert balance(engine, member) == 10 - COST  # held by the charge
    assert engine.recover_abandoned()["resumed_jobs"] == 1
    row = finished(engine, job_id)
    assert (row.status, row.attempts, row.process_id) == (JobStatus.SUCCEEDED, 1, engine.identity.id)
    assert wait_until(lambda: not charges(engine), 10)  # settled by this process
    assert balance(engine, member) == 10 - COST  # charged once, not refunded, not twice
    day = engine.meter.usage(member.workspace_id)["counts"]["day"]
    assert day == (1, 1, COST)
    with session_scope(engine.db) as session:
        record = session.get(ImageRecord, row.image_id)
    assert record.seed == 11 and record.prompt == "a harbour at dawn"
    assert announced == [(job_id, row.image_id)]
    assert engine.recover_abandoned()["resumed_jobs"] == 0  # nothing left to take


def test_an_edit_runs_again_on_its_kept_input_image(engine, member):
    source = Image.effect_noise((256, 256), 40).convert("RGB")
    job_id = abandoned_job(engine, member, image=source)
    (ref,) = job_row(engine, job_id).request["inputs"]
    assert engine.inputs.get(ref) is not None
    engine.recover_abandoned()
    row = finished(engine, job_id)
    assert row.status == JobStatus.SUCCEEDED and row.kind == "edit"
    assert wait_until(lambda: engine.inputs.get(ref) is None, 10)  # gone with the job


def test_a_job_lost_a_second_time_fails_and_is_refunded(engine, member):
    job_id = abandoned_job(engine, member, attempts=1)
    outcome = engine.recover_abandoned()
    assert outcome["resumed_jobs"] == 0 and outcome["interrupted_jobs"] == 1
    row = job_row(engine, job_id)
    assert row.status == JobStatus.FAILED and "interrupted" in row.error
    assert not charges(engine) and balance(engine, member) == 10
    assert engine.meter.usage(member.workspace_id)["counts"]["day"] == (0, 0, 0)


def test_a_job_whose_input_is_gone_fails_clearly_and_is_refunded(engine, member):
    job_id = abandoned_job(engine, member, image=Image.new("RGB", (256, 256)))
    engine.inputs.delete(job_row(engine, job_id).request["inputs"][0])
    engine.recover_abandoned()
    row = job_row(engine, job_id)
    assert row.status == JobStatus.FAILED and row.error == "could not resume the job: the job's input image is gone"
    assert not charges(engine) and balance(engine, member) == 10


def test_two_processes_recovering_at_once_take_it_once(engine, member, settings):
    job_id = abandoned_job(engine, member)
    peer = ImageEngine(settings, db=engine.db)
    peer.worker.start()
    try:
        outcomes, barrier = [], threading.Barrier(2)

        def recover(which):
            barrier.wait()
            outcomes.append(which.recover_abandoned()["resumed_jobs"])

        threads = [threading.Thread(target=recover, args=(which,)) for which in (engine, peer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [0, 1]
        assert finished(engine, job_id).status == JobStatus.SUCCEEDED
        assert wait_until(lambda: not charges(engine), 10) and balance(engine, member) == 10 - COST
    finally:
        peer.stop()


def test_a_job_a_peer_is_claiming_keeps_its_charge(engine, member):
    """Defect (seen on PostgreSQL in CI): the process that lost the race skipped the locked job, then refunded its
    charge before the winner's adoption of it committed; the job ran, its image free."""
    job_id = abandoned_job(engine, member)
    with session_scope(engine.db) as session:  # the peer's claim, before its adoption of the charge
        session.exec(update(Job).where(Job.id == job_id).values(
            status=JobStatus.QUEUED, process_id="proc_peer", lease_expires_at=utcnow() + LEASE, attempts=1))
        session.commit()
    outcome = engine.recover_abandoned()
    assert (outcome["resumed_jobs"], outcome["refunded_charges"]) == (0, 0)
    assert len(charges(engine)) == 1 and balance(engine, member) == 10 - COST


def test_a_live_process_keeps_its_async_jobs(engine, member):
    """Submitted here with async_job: kept as data, run here; nobody else's recovery takes it."""
    task = engine.submit_generation(member, GenerationParams(prompt="a mill", model="tiny-sd", width=256,
                                                             height=256), async_job=AsyncJob())
    row = job_row(engine, task.id)
    assert row.request["store"] is True and row.request["inputs"] == []
    task.future.result(60)
    assert job_row(engine, task.id).attempts == 0
    now = utcnow()
    assert now < row.lease_expires_at <= now + LEASE
