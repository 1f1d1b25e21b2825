"""What every process on one database must share: the secret, the plans, the first admin."""

import threading

from engine.accounts import admin
from engine.data.db import session_scope
from engine.data.tables import Plan, User
from engine.errors import Conflict
from engine.runtime_settings import shared_secret_key
from engine.service import ImageEngine
from tests.support import wait_until


def test_one_secret_for_every_process_on_the_database(settings, tmp_path):
    first = ImageEngine(settings.model_copy(update={"secret_key": None}))
    other_data_dir = settings.model_copy(update={"secret_key": None, "data_dir": tmp_path / "elsewhere",
                                                 "database_url": settings.db_url})
    assert ImageEngine(other_data_dir).secret_key == first.secret_key and len(first.secret_key) >= 48
    assert shared_secret_key(first.db, settings) == "test-secret"  # a configured one wins


def test_a_secret_an_earlier_version_generated_is_adopted(settings):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.secret_key_file.write_text("from-an-earlier-version\n")
    assert ImageEngine(settings.model_copy(update={"secret_key": None})).secret_key == "from-an-earlier-version"


def test_engines_starting_together_seed_the_plans_once(settings):
    errors = []

    def start():
        try:
            ImageEngine(settings)
        except Exception as exc:  # noqa: BLE001  (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = ImageEngine(settings)
    with session_scope(engine.db) as session:
        assert {p.slug for p in session.query(Plan).all()} >= {"free", "pro", "studio"}


def test_racing_first_runs_make_one_admin(engine):
    outcomes = []

    def first_run(i: int):
        with session_scope(engine.db) as session:
            try:
                admin.create_first_admin(session, f"admin{i}@example.com", "correct horse battery")
                outcomes.append("admin")
            except Conflict:
                outcomes.append("refused")

    threads = [threading.Thread(target=first_run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["admin", "refused", "refused", "refused"]
    with session_scope(engine.db) as session:
        assert session.query(User).filter(User.is_admin).count() == 1


def test_postgres_deadlocks_and_lock_timeouts_are_a_retryable_busy_database():
    from types import SimpleNamespace

    from sqlalchemy.exc import OperationalError

    from engine.data.db import is_busy

    for sqlstate, busy in (("40P01", True), ("40001", True), ("55P03", True), ("42P01", False)):
        assert is_busy(OperationalError("SELECT 1", {}, SimpleNamespace(sqlstate=sqlstate))) is busy



def test_progress_and_cancel_reach_across_processes(engine, settings, tmp_path, monkeypatch):
    """Two engines on one database, as two processes are: the one that doesn't run a job sees its progress and
    cancels it, running (at its next progress write) or queued (at the owner's heartbeat)."""
    from engine.data.tables import Job
    from engine.generation import jobs as job_module
    from engine.generation.params import GenerationParams
    from tests.conftest import make_user

    monkeypatch.setattr(job_module, "PROGRESS_SYNC_S", 0.0)
    other = ImageEngine(settings.model_copy(update={"data_dir": tmp_path / "other",
                                                    "database_url": settings.db_url}), db=engine.db)
    engine.start()
    user, _ = make_user(engine, "x@example.com")
    slow = GenerationParams(prompt="slow", model="tiny-sdxl", width=1024, height=1024, steps=50)
    running = engine.submit_generation(user, slow, store=False)
    queued = engine.submit_generation(user, GenerationParams(prompt="next", model="tiny-sd", width=256,
                                                             height=256, steps=40), store=False)

    def row(job_id) -> Job:
        return other.job(job_id, user.id)

    assert wait_until(lambda: (other.job_progress(row(running.id)) or (0, 0))[0] >= 1, timeout=60)
    step, total = other.job_progress(row(running.id))
    assert total == 50 and 1 <= step < 50 and other.worker.get(running.id) is None  # seen from the other one
    assert other.cancel_job(queued.id) and other.cancel_job(running.id)
    assert wait_until(lambda: row(running.id).status == "cancelled", timeout=60)
    engine._cancel_requested_elsewhere()  # the owner's heartbeat
    assert wait_until(lambda: row(queued.id).status == "cancelled", timeout=60)
    assert not other.cancel_job(running.id)  # over: nothing to cancel
    engine.stop()
