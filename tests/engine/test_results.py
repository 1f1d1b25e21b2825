import os
import time
from datetime import timedelta

import pytest
from sqlmodel import select

from engine.data.db import session_scope
from engine.data.idempotency import IDEMPOTENCY_TTL
from engine.data.tables import IdempotencyRecord, utcnow
from engine.storage.files import StorageError
from engine.storage.results import ResultCache


def test_put_get_expire_and_purge(tmp_path):
    cache = ResultCache(tmp_path / "results", ttl_s=60)
    assert cache.get("job_1") is None and cache.purge() == 0
    cache.put("job_1", b"png-1")
    cache.put("job_2", b"png-2")
    assert cache.get("job_1") == b"png-1"
    old = time.time() - 61
    os.utime(cache.root / "job_1.png", (old, old))
    assert cache.get("job_1") is None and cache.get("job_2") == b"png-2"
    assert cache.purge() == 1
    cache.delete("job_2")
    assert list(cache.root.iterdir()) == []


def test_ids_cannot_leave_the_folder(tmp_path):
    cache = ResultCache(tmp_path, ttl_s=60)
    with pytest.raises(StorageError):
        cache.put("../escape", b"x")


def test_a_write_that_fails_is_a_storage_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError):
        ResultCache(tmp_path / "file", ttl_s=60).put("job_1", b"x")


def test_housekeeping_forgets_expired_results_and_idempotency_records(engine):
    engine.results.put("job_old", b"old")
    engine.results.put("job_new", b"new")
    past = time.time() - engine.results.ttl_s - 1
    os.utime(engine.results.root / "job_old.png", (past, past))
    with session_scope(engine.db) as session:
        session.add(IdempotencyRecord(user_id="u", key="old", endpoint="/x", body_hash="h",
                                      created_at=utcnow() - IDEMPOTENCY_TTL - timedelta(seconds=1)))
        session.add(IdempotencyRecord(user_id="u", key="new", endpoint="/x", body_hash="h"))
        session.commit()
    assert engine.housekeeping() == {"results": 1, "idempotency_records": 1, "sign_in_attempts": 0,
                                     "api_log_rows": 0}
    assert engine.results.get("job_new") == b"new"
    with session_scope(engine.db) as session:
        assert [r.key for r in session.exec(select(IdempotencyRecord))] == ["new"]


def test_the_housekeeping_thread_runs_with_the_engine(engine):
    assert engine._housekeeper.is_alive()
    engine.stop()
    engine._housekeeper.join(timeout=5)
    assert not engine._housekeeper.is_alive()
