import os
import time
from datetime import timedelta

from sqlalchemy import text
from sqlmodel import select

from engine.data.db import session_scope
from engine.data.idempotency import IDEMPOTENCY_TTL
from engine.data.tables import IdempotencyRecord, utcnow
from tests.api.helpers import SMALL, set_plan, set_workspace
from tests.conftest import make_user


def wait_for(client, headers, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()["data"]
        if data["status"] in ("succeeded", "failed", "cancelled"):
            return data
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_async_mode_returns_202_then_the_result(client, auth):
    response = client.post("/api/v1/generate", json={"prompt": "a fox", "async": True, "seed": 5, **SMALL},
                           headers=auth)
    assert response.status_code == 202
    accepted = response.json()["data"]
    assert accepted["status"] == "queued" and response.headers["location"] == accepted["status_url"]
    job = wait_for(client, auth, accepted["job_id"])
    assert job["status"] == "succeeded" and job["result"]["seed"] == 5
    assert job["result"]["image"].startswith("data:image/png;base64,")
    sync = client.post("/api/v1/generate", json={"prompt": "a fox", "seed": 5, **SMALL}, headers=auth).json()
    assert sync["data"]["image"] == job["result"]["image"]  # same seed, same picture
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]
    assert usage == {"requestCount": 2, "imageCount": 2, "creditsUsed": 2}


def test_prefer_respond_async_and_stored_result(client, pro_auth):
    response = client.post("/api/v1/generate", json={"prompt": "a fox", **SMALL},
                           headers=pro_auth | {"Prefer": "respond-async"})
    assert response.status_code == 202
    job = wait_for(client, pro_auth, response.json()["data"]["job_id"])
    assert "/api/v1/images/" in job["result"]["image_url"]
    assert client.get(job["result"]["image_url"]).status_code == 200


def test_failed_async_job_is_not_charged(client, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0])
    set_workspace(engine, user_and_key[0], credits=5)
    accepted = client.post("/api/v1/generate", json={"prompt": "x", "model": "flux-schnell", "async": True},
                           headers=auth).json()["data"]
    job = wait_for(client, auth, accepted["job_id"])
    assert job["status"] == "failed" and "imagestudio models pull" in job["error"]
    time.sleep(0.1)
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["credits"]["balance"] == 5 and usage["usage"]["today"]["requestCount"] == 0


def test_jobs_are_private(client, auth, engine):
    job_id = client.post("/api/v1/generate", json={"prompt": "x", "async": True, **SMALL},
                         headers=auth).json()["data"]["job_id"]
    _, other = make_user(engine, "mallory@example.com")
    assert client.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert client.get("/api/v1/jobs/job_nope", headers=auth).status_code == 404
    wait_for(client, auth, job_id)


def test_async_batch_is_refused(client, auth):
    response = client.post("/api/v1/generate", json={"items": [{"prompt": "x"}], "async": True}, headers=auth)
    assert response.status_code == 400 and response.json()["error"]["field"] == "async"


def test_idempotent_retry_returns_the_first_result_and_charges_once(client, auth):
    headers = auth | {"Idempotency-Key": "order-42"}
    body = {"prompt": "a lighthouse", **SMALL}
    first = client.post("/api/v1/generate", json=body, headers=headers)
    again = client.post("/api/v1/generate", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["data"] == first.json()["data"] and again.headers["idempotent-replayed"] == "true"
    assert client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]["requestCount"] == 1
    conflict = client.post("/api/v1/generate", json=body | {"prompt": "other"}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"]["field"] == "Idempotency-Key"


def test_idempotency_key_after_a_failure_runs_again(client, auth):
    headers = auth | {"Idempotency-Key": "retry-me"}
    assert client.post("/api/v1/generate", json={"prompt": "x", "model": "flux-schnell"},
                       headers=headers).status_code == 503
    assert client.post("/api/v1/generate", json={"prompt": "x", "model": "flux-schnell"},
                       headers=headers).status_code == 503  # not replayed: failures are not kept
    too_long = client.post("/api/v1/generate", json={"prompt": "x"}, headers=auth | {"Idempotency-Key": "k" * 300})
    assert too_long.status_code == 400


def test_idempotency_keys_expire_after_a_day(client, auth, engine):
    headers = auth | {"Idempotency-Key": "order-43"}
    body = {"prompt": "a lighthouse", **SMALL}
    first = client.post("/api/v1/generate", json=body, headers=headers)
    with session_scope(engine.db) as session:
        record = session.exec(select(IdempotencyRecord)).one()
        record.created_at = utcnow() - IDEMPOTENCY_TTL - timedelta(minutes=1)
        session.add(record)
        session.commit()
    again = client.post("/api/v1/generate", json=body | {"prompt": "another day"}, headers=headers)
    assert again.status_code == 200 and "idempotent-replayed" not in again.headers  # a new request, not a 409
    assert again.json()["data"]["id"] != first.json()["data"]["id"]
    replay = client.post("/api/v1/generate", json=body | {"prompt": "another day"}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"


def data_url_bytes(url: str) -> bytes:
    import base64

    return base64.b64decode(url.split(",", 1)[1])


def test_an_unstored_result_is_kept_for_a_while_not_in_the_database(client, auth, engine):
    sync = client.post("/api/v1/generate", json={"prompt": "a fox", "seed": 5, **SMALL}, headers=auth).json()["data"]
    job = client.get(f"/api/v1/jobs/{sync['job_id']}", headers=auth).json()["data"]
    assert job["result"]["image"] == sync["image"] and job["result"]["expired"] is False  # a dropped caller can fetch it
    with engine.db.connect() as connection:
        row = connection.execute(text("SELECT CAST(result AS TEXT) FROM job WHERE id = :id"),
                                 {"id": sync["job_id"]}).scalar_one()
    assert len(row) < 2000  # parameters only, not the picture
    linked = client.get(f"/api/v1/jobs/{sync['job_id']}?inline=false", headers=auth).json()["data"]["result"]
    assert linked["image"] == linked["download_url"] == job["result"]["download_url"]
    fetched = client.get(linked["download_url"].removeprefix("http://testserver"))  # signed: no key
    assert fetched.status_code == 200 and fetched.content == data_url_bytes(sync["image"])

    path = engine.results.root / f"{sync['job_id']}.png"
    old = time.time() - engine.results.ttl_s - 1
    os.utime(path, (old, old))
    job = client.get(f"/api/v1/jobs/{sync['job_id']}", headers=auth).json()["data"]
    assert job["status"] == "succeeded" and job["result"]["seed"] == 5
    assert job["result"]["image"] is None and job["result"]["expired"] is True and job["result"]["download_url"] is None
    assert engine.results.purge() == 1 and not path.exists()
