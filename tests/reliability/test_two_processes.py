"""Two server processes on one database (and one data dir, as on one box): the plan's limits hold across both,
a process starting beside a busy one leaves its work alone, and what one process signs the other accepts.
Run on SQLite and on PostgreSQL."""

import asyncio
import base64
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from sqlmodel import select

from engine.accounts.users import hash_password
from engine.data.db import make_engine, session_scope
from engine.data.tables import User
from tests.api.helpers import SMALL, set_plan, set_user, set_workspace
from tests.server_process import Server, create_key, server_env
from tests.support import fresh_postgres_url

pytestmark = pytest.mark.sqlite_pass_only  # it picks its databases itself: once is enough

CHEAP = {"prompt": "a lighthouse", "model": "tiny-sd", "steps": 1, **SMALL}
SLOW = {"prompt": "a slow lighthouse", "model": "tiny-sdxl", "width": 512, "height": 512, "steps": 30, "async": True}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(request, tmp_path_factory, models_dir) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp(f"two-{request.param}")
    with (fresh_postgres_url() if request.param == "postgresql" else _sqlite_url(folder)) as url:
        env = server_env(folder / "data", models_dir, IMAGESTUDIO_DATABASE_URL=url)
        first = Server(env, folder / "first.log").start()
        second = Server(env, folder / "second.log").start()
        db = make_engine(url)
        try:
            yield SimpleNamespace(env=env, first=first, second=second, db=SimpleNamespace(db=db), folder=folder)
        finally:
            second.stop()
            first.stop()
            db.dispose()


@pytest.fixture
def account(pair) -> SimpleNamespace:
    """A new account for each test (its usage windows start empty), with its key."""
    email = f"user-{secrets.token_hex(4)}@example.com"
    key = create_key(pair.env, email, plan="pro")
    with session_scope(pair.db.db) as session:
        user = session.exec(select(User).where(User.email == email)).one()
    return SimpleNamespace(user=user, email=email, auth={"Authorization": f"Bearer {key}"})


class _sqlite_url:  # noqa: N801  (a context manager, like fresh_postgres_url)
    def __init__(self, folder):
        self.url = f"sqlite:///{folder / 'shared.db'}"

    def __enter__(self):
        return self.url

    def __exit__(self, *exc):
        return False


def fire_at_both(pair, account, count: int, body: dict) -> list[httpx.Response]:
    async def main():
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(*[
                http.post(f"{(pair.first if i % 2 else pair.second).base}/api/v1/generate", json=body,
                          headers=account.auth) for i in range(count)])
    return asyncio.run(main())


def usage(pair, account) -> dict:
    return httpx.get(f"{pair.first.base}/api/v1/usage", headers=account.auth, timeout=30).json()["data"]


def on_plan(pair, account, credits: int = 1000, **limits) -> None:
    set_plan(pair.db, account.user, slug=account.email.split("@")[0][:40], monthly_credits=0, **limits)
    set_workspace(pair.db, account.user, credits=credits)


@pytest.mark.parametrize("window", ["minute", "day", "month"])
def test_each_request_window_is_exact_across_both(pair, account, window):
    on_plan(pair, account, **{f"requests_per_{window}": 7})
    if datetime.now(UTC).second >= 45:  # the burst stays inside one minute window
        time.sleep(61 - datetime.now(UTC).second)
    responses = fire_at_both(pair, account, 32, CHEAP)
    assert sorted(r.status_code for r in responses) == [200] * 7 + [429] * 25
    assert {r.json()["error"]["limit"] for r in responses if r.status_code == 429} == {window}
    today = usage(pair, account)["usage"]["today"]
    assert today["requestCount"] == today["imageCount"] == 7


def test_credits_are_exact_across_both(pair, account):
    on_plan(pair, account, credits=5)
    statuses = sorted(r.status_code for r in fire_at_both(pair, account, 32, CHEAP))
    assert statuses == [200] * 5 + [402] * 27
    assert usage(pair, account)["credits"]["balance"] == 0


def test_the_concurrency_limit_is_exact_across_both(pair, account):
    """32 slow async jobs at once, half to each process: exactly three hold a slot (until they finish)."""
    on_plan(pair, account, max_concurrent_jobs=3)
    responses = fire_at_both(pair, account, 32, SLOW)
    accepted = [r.json()["data"]["job_id"] for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code != 202]
    assert len(accepted) == 3 and {r.json()["error"]["limit"] for r in refused} == {"concurrency"}
    for job_id in accepted:  # visible, and finished, from either process
        assert wait_for_job(pair.second, account.auth, job_id)["status"] == "succeeded"
    assert httpx.post(f"{pair.second.base}/api/v1/generate", json=CHEAP, headers=account.auth,
                      timeout=60).status_code == 200  # the slots came back


def wait_for_job(server, auth, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.base}/api/v1/jobs/{job_id}", headers=auth, timeout=30).json()["data"]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not finish")


def test_a_process_starting_beside_a_busy_one_leaves_its_work_alone(pair, account):
    on_plan(pair, account, max_concurrent_jobs=10)
    jobs = [httpx.post(f"{pair.first.base}/api/v1/generate", json=SLOW | {"seed": i}, headers=account.auth,
                       timeout=30).json()["data"]["job_id"] for i in range(3)]
    balance = usage(pair, account)["credits"]["balance"]
    third = Server(pair.env, pair.folder / "third.log").start()  # its start-up recovery runs now
    try:
        assert usage(pair, account)["credits"]["balance"] == balance  # nothing of the first's was refunded
        finished = [wait_for_job(third, account.auth, job_id) for job_id in jobs]
    finally:
        third.stop()
    assert [job["status"] for job in finished] == ["succeeded"] * 3


def test_an_idempotent_retry_sent_to_the_other_process_replays(pair, account):
    on_plan(pair, account)
    headers = account.auth | {"Idempotency-Key": f"retry-{time.time_ns()}"}
    first = httpx.post(f"{pair.first.base}/api/v1/generate", json=CHEAP, headers=headers, timeout=60)
    again = httpx.post(f"{pair.second.base}/api/v1/generate", json=CHEAP, headers=headers, timeout=60)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]


def test_signed_links_and_session_tokens_work_on_the_other_process(pair, account):
    on_plan(pair, account, storage_enabled=True, storage_quota_mb=100)
    data = httpx.post(f"{pair.first.base}/api/v1/generate", json=CHEAP, headers=account.auth,
                      timeout=60).json()["data"]
    assert data["storage"]["stored"] is True
    link = data["image"].replace(pair.first.base, pair.second.base)
    fetched = httpx.get(link, timeout=30)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    set_user(pair.db, account.user, password_hash=hash_password("correct horse battery"))
    token = httpx.post(f"{pair.first.base}/api/v1/auth/login", json={"email": account.email,
                                                                     "password": "correct horse battery"},
                       timeout=30).json()["data"]["access_token"]
    me = httpx.get(f"{pair.second.base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200 and me.json()["data"]["email"] == account.email


def wait_until_running(server, auth, job_id: str, timeout: float = 60) -> dict:
    """The job as seen from ``server`` once its denoising is under way (progress written by whoever runs it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.base}/api/v1/jobs/{job_id}", headers=auth, timeout=30).json()["data"]
        if job["status"] == "running" and (job.get("progress") or {}).get("step", 0) >= 1:
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} never got going")


def test_progress_and_cancel_from_the_process_that_did_not_accept_it(pair, account):
    on_plan(pair, account, max_concurrent_jobs=10)
    balance = usage(pair, account)["credits"]["balance"]
    job_id = httpx.post(f"{pair.first.base}/api/v1/generate", json=SLOW, headers=account.auth,
                        timeout=30).json()["data"]["job_id"]
    job = wait_until_running(pair.second, account.auth, job_id)
    assert job["progress"]["total"] == SLOW["steps"]

    def preview() -> str | None:  # the running job's latest preview, as the other process wrote it
        return httpx.get(f"{pair.second.base}/sdapi/v1/progress", headers=account.auth,
                         timeout=30).json()["current_image"]

    deadline = time.monotonic() + 30
    while (image := preview()) is None:
        assert time.monotonic() < deadline, "no preview came through the job row"
        time.sleep(0.2)
    assert base64.b64decode(image).startswith(b"\x89PNG")
    cancelled = httpx.delete(f"{pair.second.base}/api/v1/jobs/{job_id}", headers=account.auth, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    assert wait_for_job(pair.second, account.auth, job_id)["status"] == "cancelled"
    assert usage(pair, account)["credits"]["balance"] == balance  # refunded


def test_an_async_job_outlives_the_process_that_accepted_it(pair, account):
    """SIGKILL of the process that answered 202, mid-denoising: a peer claims the job from its row, runs it and
    serves it; it is charged once."""
    import os
    import signal

    on_plan(pair, account, max_concurrent_jobs=10, storage_enabled=True, storage_quota_mb=100)
    balance = usage(pair, account)["credits"]["balance"]
    doomed = Server(pair.env, pair.folder / "doomed.log").start()
    try:
        job_id = httpx.post(f"{doomed.base}/api/v1/generate", json=SLOW | {"steps": 8, "seed": 5},
                            headers=account.auth, timeout=30).json()["data"]["job_id"]
        wait_until_running(pair.second, account.auth, job_id)
        held = usage(pair, account)["credits"]["balance"]
        assert held < balance  # the job's price is held while it runs
        os.kill(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(10)
    finally:
        doomed.stop()
    job = wait_for_job(pair.second, account.auth, job_id, timeout=180)  # a peer's next heartbeat claims it
    assert job["status"] == "succeeded", job
    assert job["result"]["seed"] == 5
    image = httpx.get(job["result"]["image_url"], timeout=30)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert usage(pair, account)["credits"]["balance"] == held  # charged once: not refunded, not twice
