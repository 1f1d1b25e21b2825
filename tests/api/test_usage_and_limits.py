import asyncio
import calendar
from datetime import UTC, datetime

import httpx

from tests.api.helpers import SMALL, set_plan, set_workspace


def test_usage_after_a_known_sequence(client, auth, user_and_key, engine):
    user, _ = user_and_key
    set_plan(engine, user, requests_per_day=50, requests_per_month=1500, monthly_credits=100)
    set_workspace(engine, user, credits=100)
    body = {"model": "tiny-sd", **SMALL}
    assert client.post("/api/v1/generate", json=body | {"prompt": "a"}, headers=auth).status_code == 200
    batch = {"items": [{"prompt": "b"}, {"prompt": "c"}, {"prompt": ""}], **body}
    assert client.post("/api/v1/generate", json=batch, headers=auth).json()["data"]["succeeded"] == 2
    assert client.post("/api/v1/generate", json={"prompt": "x", "steps": 99}, headers=auth).status_code == 422
    assert client.post("/api/v1/generate", json={"prompt": "x", "model": "phoenix-1"}, headers=auth).status_code == 503
    response = client.get("/api/v1/usage", headers=auth)
    assert response.status_code == 200
    envelope = response.json()
    assert envelope["success"] is True and envelope["request_id"]
    payload = envelope["data"]  # the seed API's shape: data.usage, data.plan
    assert payload["usage"]["today"] == {"requestCount": 3, "imageCount": 3, "creditsUsed": 3}
    assert payload["usage"]["this_month"] == {"requestCount": 3, "imageCount": 3, "creditsUsed": 3}
    assert payload["plan"]["slug"] == "custom" and payload["plan"]["name"] == "Custom"
    assert payload["plan"]["remaining_today"] == 47 and payload["plan"]["remaining_month"] == 1497
    assert payload["plan"]["requests_per_day"] == 50 and payload["plan"]["requests_per_month"] == 1500
    assert payload["plan"]["limits"]["requests_per_day"] == 50
    assert payload["credits"]["balance"] == 97


def test_free_plan_shape(client, auth):
    plan = client.get("/api/v1/usage", headers=auth).json()["data"]["plan"]
    assert plan["slug"] == "free" and plan["limits"]["requests_per_day"] == 50
    assert plan["limits"]["requests_per_month"] == 1500


def test_429_with_retry_after_and_ratelimit_headers(client, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_minute=2)
    body = {"prompt": "x", **SMALL}
    first = client.post("/api/v1/generate", json=body, headers=auth)
    assert first.headers["RateLimit-Remaining"] == "1"
    today = datetime.now(UTC)
    month_s = calendar.monthrange(today.year, today.month)[1] * 86400  # the calendar month, not 30 days
    policy = first.headers["RateLimit-Policy"]
    assert policy.startswith("2;w=60, ") and ";w=86400, " in policy and policy.endswith(f";w={month_s}")
    client.post("/api/v1/generate", json=body, headers=auth)
    limited = client.post("/api/v1/generate", json=body, headers=auth)
    assert limited.status_code == 429
    payload = limited.json()
    assert payload["error"]["code"] == "rate_limited" and payload["request_id"]
    assert 1 <= payload["error"]["retry_after"] <= 60 and payload["error"]["limit"] == "minute"
    assert limited.headers["Retry-After"] == str(payload["error"]["retry_after"])
    assert limited.headers["RateLimit-Remaining"] == "0" and limited.headers["RateLimit"].startswith("limit=2")


def test_402_when_credits_run_out_and_nothing_charged_for_failures(client, auth, user_and_key, engine):
    user = user_and_key[0]
    set_plan(engine, user)
    set_workspace(engine, user, credits=1)
    body = {"prompt": "x", **SMALL}
    assert client.post("/api/v1/generate", json=body | {"model": "flux-schnell"}, headers=auth).status_code == 503
    assert client.get("/api/v1/usage", headers=auth).json()["data"]["credits"]["balance"] == 1  # the failure was free
    assert client.post("/api/v1/generate", json=body, headers=auth).status_code == 200
    broke = client.post("/api/v1/generate", json=body, headers=auth)
    assert broke.status_code == 402
    assert broke.json()["error"]["code"] == "insufficient_credits" and "balance is 0" in broke.json()["error"]["message"]


def test_suspended_account_and_no_plan_get_403(client, auth, user_and_key, engine):
    user = user_and_key[0]
    set_workspace(engine, user, suspended=True)
    for call in (lambda: client.post("/api/v1/generate", json={"prompt": "x"}, headers=auth),
                 lambda: client.get("/api/v1/usage", headers=auth)):
        response = call()
        assert response.status_code == 403 and "suspended" in response.json()["error"]["message"]
    set_workspace(engine, user, suspended=False, plan_slug=None)
    assert client.post("/api/v1/generate", json={"prompt": "x"}, headers=auth).status_code == 403


def test_thirty_concurrent_requests_against_ten_remaining(client, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_day=10, max_concurrent_jobs=100)

    async def fire():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            calls = [http.post("/api/v1/generate", json={"prompt": f"p{i}", **SMALL}, headers=auth)
                     for i in range(30)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(fire())
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]
    assert usage["requestCount"] == 10 and usage["imageCount"] == 10


def test_concurrency_limit_over_http(client, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], max_concurrent_jobs=1)

    async def fire():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*[http.post("/api/v1/generate", json={"prompt": "p", **SMALL},
                                                    headers=auth) for _ in range(4)])

    statuses = [r.status_code for r in asyncio.run(fire())]
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 429}
    limited = [r for r in asyncio.run(fire()) if r.status_code == 429]
    assert all(r.json()["error"]["limit"] == "concurrency" for r in limited)
