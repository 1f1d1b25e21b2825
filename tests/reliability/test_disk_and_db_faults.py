"""A full or unwritable image store and a locked database: clear errors with a request id, never a record that
points at a missing file, never a charge for what failed."""

import errno
import shutil
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from engine.data.db import make_engine, session_scope
from engine.data.tables import ImageRecord, Job
from engine.service import ImageEngine
from engine.storage import files as image_storage
from tests.api.helpers import SMALL, set_plan, set_workspace
from tests.conftest import make_user

GENERATE = {"prompt": "a lighthouse", "model": "tiny-sd", **SMALL}


@pytest.fixture
def pro(engine):
    """A user whose images are stored, with a known balance."""
    user, key = make_user(engine, "pat@example.com", plan="pro")
    set_plan(engine, user, slug="storing", storage_enabled=True, storage_quota_mb=100)
    set_workspace(engine, user, credits=50)
    return user, {"Authorization": f"Bearer {key}"}


def assert_failed_cleanly(client, engine, headers, response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["request_id"] == response.headers["x-request-id"]
    with session_scope(engine.db) as session:
        assert session.exec(select(ImageRecord)).all() == []  # no record, let alone one without its file
    folder = engine.settings.images_dir
    images = [p for p in folder.rglob("*") if p.suffix in (".png", ".tmp")] if folder.is_dir() else []
    assert images == []  # no partial file either
    usage = client.get("/api/v1/usage", headers=headers).json()["data"]
    assert usage["credits"]["balance"] == 50 and usage["usage"]["today"]["requestCount"] == 0


# -- storage ------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(engine):
    """The images folder on a nearly full 64 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    folder = engine.settings.images_dir
    if not shutil.which("mount"):
        pytest.skip("no mount command here")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (folder / "filler").write_bytes(b"\0" * 60 * 1024)  # nearly full: a few KB left
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_a_507_and_costs_nothing(client, engine, pro, tiny_tmpfs):
    response = client.post("/api/v1/generate", json=GENERATE, headers=pro[1])
    assert_failed_cleanly(client, engine, pro[1], response, 507, "storage_error")
    assert "No space left on device" in response.json()["error"]["message"]


@pytest.fixture
def disk_full(monkeypatch):
    """Every image write stops half way with ENOSPC, like a disk filling up mid-write."""
    real_open = open

    class HalfWriter:
        def __init__(self, path, mode):
            self.fh = real_open(path, mode)

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(image_storage, "open", HalfWriter, raising=False)  # the store's own open()


def test_a_write_cut_short_by_a_full_disk_is_a_507(client, engine, pro, disk_full):
    response = client.post("/api/v1/generate", json=GENERATE, headers=pro[1])
    assert_failed_cleanly(client, engine, pro[1], response, 507, "storage_error")
    assert "No space left on device" in response.json()["error"]["message"]


def test_an_async_job_that_cannot_store_fails_and_costs_nothing(client, engine, pro, disk_full):
    accepted = client.post("/api/v1/generate", json=GENERATE | {"async": True}, headers=pro[1])
    assert accepted.status_code == 202
    job_url = accepted.json()["data"]["status_url"]
    deadline = time.monotonic() + 30
    while (job := client.get(job_url, headers=pro[1]).json()["data"])["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "failed" and "storage" in job["error"]
    # The admission is settled by the job's done-callback, just after the job row says failed.
    while (usage := client.get("/api/v1/usage", headers=pro[1]).json()["data"])["usage"]["today"]["requestCount"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert usage["credits"]["balance"] == 50
    with session_scope(engine.db) as session:
        assert session.exec(select(ImageRecord)).all() == []


def test_an_unwritable_store_is_a_507_and_health_says_so(client, engine, pro):
    # chmod doesn't stop root: a regular file where the folder should be does.
    folder = engine.settings.images_dir
    folder.rmdir()
    folder.write_bytes(b"not a folder")
    response = client.post("/api/v1/generate", json=GENERATE, headers=pro[1])
    folder.unlink()
    assert_failed_cleanly(client, engine, pro[1], response, 507, "storage_error")
    folder.write_bytes(b"not a folder")
    health = client.get("/api/v1/health")
    assert health.status_code == 503 and health.json()["data"]["checks"]["storage"]["status"] == "error"
    folder.unlink()
    folder.mkdir()
    assert client.post("/api/v1/generate", json=GENERATE, headers=pro[1]).status_code == 200  # and it recovers


# -- database -----------------------------------------------------------------------------------------

@pytest.fixture
def locked_app(settings):
    """An app whose database gives up waiting for a lock after 400 ms (10 s in production)."""
    eng = ImageEngine(settings, db=make_engine(settings.db_url, busy_timeout_ms=400))
    with TestClient(create_app(engine=eng, with_studio=False)) as client:
        yield client, eng


@contextmanager
def write_lock(db_path, hold_s: float | None = None):
    """Another process's write transaction on the database file: held for ``hold_s``, or for the block."""
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(hold_s, conn.commit) if hold_s else None
    if timer:
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.join()
        else:
            conn.commit()
        conn.close()


def db_path(eng: ImageEngine):
    return eng.settings.data_dir / "imagestudio.db"


def test_a_short_lock_makes_requests_wait_then_succeed(settings):
    eng = ImageEngine(settings, db=make_engine(settings.db_url, busy_timeout_ms=5000))
    with TestClient(create_app(engine=eng, with_studio=False)) as client:
        _, key = make_user(eng, "w@example.com")
        headers = {"Authorization": f"Bearer {key}"}
        started = time.monotonic()
        with write_lock(db_path(eng), hold_s=1.0):
            response = client.post("/api/v1/generate", json=GENERATE, headers=headers)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started >= 0.9  # it waited for the lock instead of failing
        assert client.get("/api/v1/usage", headers=headers).json()["data"]["usage"]["today"]["requestCount"] == 1


@pytest.mark.sqlite_pass_only  # SQLite's write lock held by another connection
def test_a_long_lock_is_a_clean_503_and_nothing_half_written(locked_app):
    client, eng = locked_app
    user, key = make_user(eng, "l@example.com")
    set_workspace(eng, user, credits=50)
    headers = {"Authorization": f"Bearer {key}"}
    with write_lock(db_path(eng)):
        responses = [client.post("/api/v1/generate", json=GENERATE, headers=headers),
                     client.post("/api/v1/generate", json=GENERATE | {"async": True}, headers=headers)]
        # Reads take no write lock: they see the last commit and answer at once.
        read = client.get("/api/v1/usage", headers=headers)
        assert read.status_code == 200 and read.json()["data"]["credits"]["balance"] == 50
    for response in responses:
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["error"]["code"] == "database_busy" and body["request_id"] == response.headers["x-request-id"]
        assert response.headers["retry-after"] == "1"
    with session_scope(eng.db) as session:
        assert session.exec(select(Job)).all() == [] and session.exec(select(ImageRecord)).all() == []
    usage = client.get("/api/v1/usage", headers=headers).json()["data"]
    assert usage["credits"]["balance"] == 50 and usage["usage"]["today"]["requestCount"] == 0
    assert client.post("/api/v1/generate", json=GENERATE, headers=headers).status_code == 200  # lock gone: fine
    with sqlite3.connect(db_path(eng)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_concurrent_health_checks_do_not_fail_each_other(client):
    """Found by the load run: health checks shared one probe file and deleted each other's (spurious 503s)."""
    import asyncio

    import httpx

    async def checks():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), base_url="http://test") as http:
            return await asyncio.gather(*[http.get("/api/v1/health") for _ in range(100)])

    responses = asyncio.run(checks())
    assert [r.status_code for r in responses] == [200] * 100
    assert not [p for p in client.app.state.engine.settings.images_dir.iterdir() if p.name.startswith(".probe")]
