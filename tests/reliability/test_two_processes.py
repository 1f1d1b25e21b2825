"""Two server processes on one database (and one data dir, as on one box): the plan's limits hold across both,
a process starting beside a busy one leaves its work alone, and what one process signs the other accepts.
Run on SQLite and on PostgreSQL."""

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from sqlmodel import select

from engine.accounts import hash_password
from engine.db import make_engine, session_scope
from engine.models import User
from tests.api.helpers import SMALL, set_plan, set_user, set_workspace
from tests.server_process import Server, create_key, server_env
from tests.support import fresh_postgres_url

CHEAP = {"prompt": "a lighthouse", "model": "tiny-sd", "steps": 1, **SMALL}
SLOW = {"prompt": "a slow lighthouse", "model": "tiny-sdxl", "width": 512, "height": 512, "steps": 30, "async": True}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(request, tmp_path_factory, models_dir) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp(f"two-{request.param}")
    with (fresh_postgres_url() if request.param == "postgresql" else _sqlite_url(folder)) as url:
        env = server_env(folder / "data", models_dir, IMAGESTUDIO_DATABASE_URL=url)
        first = Server(env, folder / "first.log").start()
        key = create_key(env, "pat@example.com", plan="pro")
        second = Server(env, folder / "second.log").start()
        db = make_engine(url)
        with session_scope(db) as session:
            user = session.exec(select(User).where(User.email == "pat@example.com")).one()
        try:
            yield SimpleNamespace(env=env, first=first, second=second, db=SimpleNamespace(db=db), user=user,
                                  auth={"Authorization": f"Bearer {key}"}, folder=folder)
        finally:
            second.stop()
            first.stop()
            db.dispose()


class _sqlite_url:  # noqa: N801  (a context manager, like fresh_postgres_url)
    def __init__(self, folder):
        self.url = f"sqlite:///{folder / 'shared.db'}"

    def __enter__(self):
        return self.url

    def __exit__(self, *exc):
        return False


def fire_at_both(pair, count: int, body: dict) -> list[httpx.Response]:
    async def main():
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(*[
                http.post(f"{(pair.first if i % 2 else pair.second).base}/api/v1/generate", json=body,
                          headers=pair.auth) for i in range(count)])
    return asyncio.run(main())


def usage(pair) -> dict:
    return httpx.get(f"{pair.first.base}/api/v1/usage", headers=pair.auth, timeout=30).json()["data"]


def test_the_per_minute_limit_is_exact_across_both(pair):
    set_plan(pair.db, pair.user, slug="minute", requests_per_minute=7, monthly_credits=0)
    set_workspace(pair.db, pair.user, credits=1000)
    if datetime.now(UTC).second >= 45:  # the burst stays inside one minute window
        time.sleep(61 - datetime.now(UTC).second)
    before = usage(pair)["usage"]["today"]["requestCount"]
    statuses = sorted(r.status_code for r in fire_at_both(pair, 32, CHEAP))
    assert statuses == [200] * 7 + [429] * 25
    assert usage(pair)["usage"]["today"]["requestCount"] == before + 7


def test_credits_are_exact_across_both(pair):
    set_plan(pair.db, pair.user, slug="credits", monthly_credits=0)
    set_workspace(pair.db, pair.user, credits=5)
    statuses = sorted(r.status_code for r in fire_at_both(pair, 32, CHEAP))
    assert statuses == [200] * 5 + [402] * 27
    assert usage(pair)["credits"]["balance"] == 0


def test_the_concurrency_limit_holds_across_both(pair):
    set_plan(pair.db, pair.user, slug="one-at-a-time", max_concurrent_jobs=1, monthly_credits=0)
    set_workspace(pair.db, pair.user, credits=1000)
    job = httpx.post(f"{pair.first.base}/api/v1/generate", json=SLOW, headers=pair.auth, timeout=30)
    assert job.status_code == 202, job.text
    other = httpx.post(f"{pair.second.base}/api/v1/generate", json=CHEAP, headers=pair.auth, timeout=30)
    assert other.status_code == 429 and other.json()["error"]["limit"] == "concurrency"
    wait_for_job(pair.second, pair.auth, job.json()["data"]["job_id"])  # the job is visible from the other
    assert httpx.post(f"{pair.second.base}/api/v1/generate", json=CHEAP, headers=pair.auth,
                      timeout=60).status_code == 200  # its slot came back


def wait_for_job(server, auth, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.base}/api/v1/jobs/{job_id}", headers=auth, timeout=30).json()["data"]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not finish")


def test_a_process_starting_beside_a_busy_one_leaves_its_work_alone(pair):
    set_plan(pair.db, pair.user, slug="busy", max_concurrent_jobs=10, monthly_credits=0)
    set_workspace(pair.db, pair.user, credits=1000)
    jobs = [httpx.post(f"{pair.first.base}/api/v1/generate", json=SLOW | {"seed": i}, headers=pair.auth,
                       timeout=30).json()["data"]["job_id"] for i in range(3)]
    balance = usage(pair)["credits"]["balance"]
    third = Server(pair.env, pair.folder / "third.log").start()  # its start-up recovery runs now
    try:
        assert usage(pair)["credits"]["balance"] == balance  # nothing of the first's was refunded
        finished = [wait_for_job(third, pair.auth, job_id) for job_id in jobs]
    finally:
        third.stop()
    assert [job["status"] for job in finished] == ["succeeded"] * 3


def test_an_idempotent_retry_sent_to_the_other_process_replays(pair):
    set_plan(pair.db, pair.user, slug="retry", monthly_credits=0)
    set_workspace(pair.db, pair.user, credits=1000)
    headers = pair.auth | {"Idempotency-Key": f"retry-{time.time_ns()}"}
    first = httpx.post(f"{pair.first.base}/api/v1/generate", json=CHEAP, headers=headers, timeout=60)
    again = httpx.post(f"{pair.second.base}/api/v1/generate", json=CHEAP, headers=headers, timeout=60)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]


def test_signed_links_and_session_tokens_work_on_the_other_process(pair):
    set_plan(pair.db, pair.user, slug="links", storage_enabled=True, storage_quota_mb=100, monthly_credits=0)
    set_workspace(pair.db, pair.user, credits=1000)
    data = httpx.post(f"{pair.first.base}/api/v1/generate", json=CHEAP, headers=pair.auth, timeout=60).json()["data"]
    assert data["storage"]["stored"] is True
    link = data["image"].replace(pair.first.base, pair.second.base)
    fetched = httpx.get(link, timeout=30)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    set_user(pair.db, pair.user, password_hash=hash_password("correct horse battery"))
    token = httpx.post(f"{pair.first.base}/api/v1/auth/login", json={"email": "pat@example.com",
                                                                     "password": "correct horse battery"},
                       timeout=30).json()["data"]["access_token"]
    me = httpx.get(f"{pair.second.base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200 and me.json()["data"]["email"] == "pat@example.com"
