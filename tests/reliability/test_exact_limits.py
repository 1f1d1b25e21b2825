"""Every plan limit, hit over HTTP by many parallel requests on the SQLite file database, grants exactly what
it allows; afterwards the usage report, the credit balance and the API log all agree with what was granted.

Requests go through the whole app (auth, metering, the worker, the API log) with httpx's ASGI transport; the
blocking parts (admission, settling, sign-in checks) run in a pool of 32 threads, so SQLite really sees many
writers at once.
"""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import select

from engine.data.db import session_scope
from engine.data.tables import ApiLog
from engine.errors import RateLimited
from engine.generation.worker import Task
from tests.api.helpers import SMALL, set_plan, set_workspace

PARALLEL = 40
# The cheapest metered request: prompt tools are free and outside the quotas, so limits are probed with generate.
CHEAP = ("POST", "/api/v1/generate", {"prompt": "a lighthouse", "model": "tiny-sd", "steps": 1, **SMALL})


def fire(app, requests: list[tuple[str, str, dict]], headers: dict) -> list[httpx.Response]:
    """Send all requests at once and wait for every answer."""

    async def main():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as http:
            return await asyncio.gather(*[http.request(method, path, json=body, headers=headers)
                                          for method, path, body in requests])

    return asyncio.run(main())


def avoid_minute_boundary() -> None:
    """The per-minute window resets on the minute: start a burst early in one so it stays inside it."""
    second = datetime.now(UTC).second
    if second >= 50:
        time.sleep(61 - second)


def api_log(engine, user) -> list[ApiLog]:
    engine.request_log.flush()
    with session_scope(engine.db) as session:
        return list(session.exec(select(ApiLog).where(ApiLog.user_id == user.id)).all())


@pytest.mark.parametrize("window,field", [("minute", "requests_per_minute"), ("day", "requests_per_day"),
                                          ("month", "requests_per_month")])
def test_each_request_window_grants_exactly_its_limit(client, auth, user_and_key, engine, window, field):
    user = user_and_key[0]
    set_plan(engine, user, **{field: 7})
    set_workspace(engine, user, credits=1000)
    avoid_minute_boundary()
    responses = fire(client.app, [CHEAP] * PARALLEL, auth)

    granted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(granted) == 7
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["limit"] for r in refused} == {window}
    # Each granted request saw its own place in the window: remaining 6, 5, ... 0, never twice the same.
    assert sorted(int(r.headers["RateLimit-Remaining"]) for r in granted) == list(range(7))

    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["usage"]["today"]["requestCount"] == usage["usage"]["this_month"]["requestCount"] == 7
    logged = api_log(engine, user)
    assert sum(1 for e in logged if e.status == 200 and e.endpoint == "/api/v1/generate") == 7
    assert sum(1 for e in logged if e.status == 429) == PARALLEL - 7


def test_credits_pay_for_exactly_what_the_balance_covers(client, auth, user_and_key, engine):
    user = user_and_key[0]
    set_plan(engine, user)
    set_workspace(engine, user, credits=9)
    single = ("POST", "/api/v1/generate", {"prompt": "a fox", "model": "tiny-sd", **SMALL})  # 1 credit
    responses = fire(client.app, [single] * 30, auth)

    assert sorted(r.status_code for r in responses) == [200] * 9 + [402] * 21
    assert all("balance is" in r.json()["error"]["message"] for r in responses if r.status_code == 402)
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["credits"]["balance"] == 0
    assert usage["usage"]["today"] == {"requestCount": 9, "imageCount": 9, "creditsUsed": 9}


def test_batches_take_exactly_what_the_balance_covers(client, auth, user_and_key, engine):
    """Racing batches: items run while credits last, the rest come back refused; a batch of which nothing fits
    is a 402. Exactly the balance is spent, never more."""
    user = user_and_key[0]
    set_plan(engine, user)
    set_workspace(engine, user, credits=10)
    batch = ("POST", "/api/v1/generate", {"items": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}],
                                          "model": "tiny-sd", **SMALL})  # 3 credits
    responses = fire(client.app, [batch] * 10, auth)

    paid = [r.json()["data"] for r in responses if r.status_code == 200]
    assert sum(data["succeeded"] for data in paid) == 10
    assert {r.status_code for r in responses} <= {200, 402} and len(paid) >= 4  # 3 + 3 + 3 + 1 at least
    refused_items = [item for data in paid for item in data["results"] if not item["success"]]
    assert {item["error_code"] for item in refused_items} <= {"insufficient_credits"}
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["credits"]["balance"] == 0
    assert usage["usage"]["today"] == {"requestCount": 10, "imageCount": 10, "creditsUsed": 10}


def test_credits_total_adds_up_with_failures_in_the_mix(client, auth, user_and_key, engine):
    """Failed requests are refunded even when they race successful ones for the same balance."""
    user = user_and_key[0]
    set_plan(engine, user)
    set_workspace(engine, user, credits=1000)
    good = ("POST", "/api/v1/generate", {"prompt": "ok", "model": "tiny-flux", **SMALL})
    unavailable = ("POST", "/api/v1/generate", {"prompt": "x", "model": "flux-schnell", **SMALL})  # 503
    invalid = ("POST", "/api/v1/generate", {"prompt": "x", "steps": 0})  # 422, before metering
    responses = fire(client.app, [good, unavailable, invalid] * 10, auth)

    assert sorted(r.status_code for r in responses) == [200] * 10 + [422] * 10 + [503] * 10
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["credits"]["balance"] == 990
    assert usage["usage"]["today"] == {"requestCount": 10, "imageCount": 10, "creditsUsed": 10}


def test_concurrency_limit_grants_exactly_its_slots(client, auth, user_and_key, engine, monkeypatch):
    """Requests that are all in flight at once: exactly max_concurrent_jobs get in, and slots come back."""
    set_plan(engine, user_and_key[0], max_concurrent_jobs=3)
    set_workspace(engine, user_and_key[0], credits=1000)
    admitted, refused = threading.Semaphore(0), threading.Semaphore(0)
    gate = threading.Event()
    # The admitted requests wait behind this task on the worker until every other one has been turned away.
    engine.worker.submit(Task(id="gate", owner="gate", run=lambda _task: gate.wait(30)))
    admit = engine.meter.admit

    def counted_admit(*args, **kwargs):
        try:
            admission = admit(*args, **kwargs)
        except RateLimited:
            refused.release()
            raise
        admitted.release()
        return admission

    monkeypatch.setattr(engine.meter, "admit", counted_admit)

    def let_go_once_all_are_in_or_refused():
        for semaphore, count in ((admitted, 3), (refused, 17)):
            for _ in range(count):
                assert semaphore.acquire(timeout=30)
        gate.set()

    opener = threading.Thread(target=let_go_once_all_are_in_or_refused)
    opener.start()
    responses = fire(client.app, [CHEAP] * 20, auth)
    gate.set()
    opener.join()

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [429] * 17
    assert {r.json()["error"]["limit"] for r in responses if r.status_code == 429} == {"concurrency"}
    assert engine.meter.active(user_and_key[0].workspace_id) == 0  # every slot given back
    again = fire(client.app, [CHEAP] * 3, auth)
    assert sorted(r.status_code for r in again) == [200] * 3
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]
    assert usage["requestCount"] == 6  # refused requests count for nothing


def test_limits_hold_across_users_sharing_nothing(client, engine):
    """Two workspaces hammering at once each get exactly their own quota."""
    from tests.conftest import make_user

    users = [make_user(engine, f"u{i}@example.com") for i in range(2)]
    for user, _ in users:
        set_plan(engine, user, requests_per_day=5)
        set_workspace(engine, user, credits=100)

    async def both():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32))
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            calls = [http.post(CHEAP[1], json=CHEAP[2], headers={"Authorization": f"Bearer {key}"})
                     for _, key in users for _ in range(15)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(both())
    assert [r.status_code for r in responses[:15]].count(200) == 5
    assert [r.status_code for r in responses[15:]].count(200) == 5
