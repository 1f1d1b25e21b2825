"""Reliability and security, round two (issue 12): one test per fault found from outside, each failing on the
main before the fix."""

import base64
import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from sqlmodel import select

from engine.billing.pricing import generation_credits
from engine.data.db import session_scope
from engine.data.tables import ImageRecord, Job, PendingCharge, UsageCounter
from engine.generation.params import GenerationParams, steps_for_edit
from tests.api.helpers import SMALL, set_plan, set_workspace
from tests.reliability.test_hostile_inputs import Handler, local_site, refused  # noqa: F401  (fixture)


def png_data_url(size=(64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (20, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def usage(client, auth) -> dict:
    return client.get("/api/v1/usage", headers=auth).json()["data"]


# -- 1. a forged signed link with non-ASCII characters -----------------------------------------------------

@pytest.mark.parametrize("signature", ["%3D%C3%A3%F2%BA%9F%80", "%C3%A9" * 16, "%FF%FE", "%00", "a" * 500])
def test_a_signed_link_with_a_non_ascii_signature_is_a_404_not_a_500(client, signature):
    response = client.get(f"/api/v1/images/0?expires=2124614731909&signature={signature}")
    refused(response, 404, "not_found")


# -- 2. edits whose strength leaves no denoising step ----------------------------------------------------

@pytest.mark.parametrize("model", ["tiny-sd", "tiny-sdxl"])
@pytest.mark.parametrize(("steps", "strength"), [(1, 0.5), (1, 0.99), (3, 0.3), (2, 0.1)])
def test_an_edit_with_too_few_steps_for_its_strength_runs_at_least_one(client, auth, model, steps, strength):
    response = client.post("/api/v1/image-studio", headers=auth, json={
        "action": "edit", "prompt": "make it red", "model": model, "input_image": png_data_url(),
        "aspect_ratio": "1:1", "num_inference_steps": steps, "strength": strength})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["num_inference_steps"] == steps_for_edit(steps, strength) > steps
    assert int(data["num_inference_steps"] * strength) >= 1
    assert any("num_inference_steps raised" in warning for warning in data["warnings"])


def test_steps_for_edit():
    assert steps_for_edit(4, 0.6) == 4 and steps_for_edit(1, 1.0) == 1
    assert steps_for_edit(1, 0.5) == 2 and steps_for_edit(3, 0.3) == 4 and steps_for_edit(1, 0.01) == 100


# -- 3. cancelling a queued job ----------------------------------------------------------------------------

def test_delete_cancels_a_queued_job_records_it_and_refunds_it(client, engine, user_and_key, auth):
    set_plan(engine, user_and_key[0], max_concurrent_jobs=5)
    set_workspace(engine, user_and_key[0], credits=100)
    release = threading.Event()
    original = engine.jobs.run_generation_batch

    def held(tasks):  # the first job holds the worker, so the second one waits in the queue
        release.wait(30)
        original(tasks)

    engine.worker._tasks.clear()
    engine.jobs.run_generation_batch = held
    try:
        before = usage(client, auth)
        first = client.post("/api/v1/generate", headers=auth, json={"prompt": "one", **SMALL, "async": True})
        second = client.post("/api/v1/generate", headers=auth, json={"prompt": "two", **SMALL, "async": True})
        job_id = second.json()["data"]["job_id"]
        cancelled = client.delete(f"/api/v1/jobs/{job_id}", headers=auth)
        assert cancelled.status_code == 200 and cancelled.json()["data"] == {"job_id": job_id, "cancelling": True}
        job = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"]
        assert job["status"] == "cancelled" and job["finished_at"]
        during = usage(client, auth)
        assert during["credits"]["balance"] == before["credits"]["balance"] - 1  # only the first is charged
        assert client.get("/api/v1/health").status_code in (200, 503)
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if client.get(f"/api/v1/jobs/{first.json()['data']['job_id']}", headers=auth).json()["data"][
                "status"] == "succeeded":
            break
        time.sleep(0.05)
    after = usage(client, auth)
    assert after["credits"]["balance"] == before["credits"]["balance"] - 1
    assert after["usage"]["today"]["requestCount"] == before["usage"]["today"]["requestCount"] + 1
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"]["cancelling"] is False


def test_delete_of_another_users_job_is_a_404(client, engine, auth, pro_auth):
    job_id = client.post("/api/v1/generate", headers=pro_auth, json={"prompt": "mine", **SMALL,
                                                                     "async": True}).json()["data"]["job_id"]
    refused(client.delete(f"/api/v1/jobs/{job_id}", headers=auth), 404, "not_found")
    refused(client.delete("/api/v1/jobs/job_nope", headers=auth), 404, "not_found")


# -- 4. a crash between the image and the settlement -------------------------------------------------------

def test_a_delivered_image_stays_billed_when_the_process_dies_before_settling(engine, user_and_key):
    """The image record and its bill are one transaction: recovery after a crash gives back only what was
    never delivered."""
    user = user_and_key[0]
    set_plan(engine, user, storage_enabled=True)
    set_workspace(engine, user, credits=10)
    spec = engine.catalog.get("tiny-sd")
    cost = generation_credits(spec, 256, 256)
    admission = engine.meter.admit_batch(user.workspace_id, [cost, cost])
    params = GenerationParams(prompt="billed", model="tiny-sd", **SMALL)
    engine.submit_generation(user, params, store=True, charge_id=admission.charge_id, cost=cost).future.result()
    # The process dies here: no settle. Its lease runs out; another process recovers.
    with session_scope(engine.db) as session:
        charge = session.get(PendingCharge, admission.charge_id)
        assert (charge.requests, charge.credits) == (1, cost)  # one image delivered, one still pending
        charge.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(charge)
        session.commit()
    assert engine.meter.refund_abandoned() == 1
    with session_scope(engine.db) as session:
        day = session.exec(select(UsageCounter).where(UsageCounter.workspace_id == user.workspace_id,
                                                      UsageCounter.window == "day")).one()
        images = session.exec(select(ImageRecord).where(ImageRecord.user_id == user.id)).all()
    assert (day.requests, day.images, day.credits) == (1, 1, cost) and len(images) == 1
    assert engine.meter.plan_of(user.workspace_id)[0].credits == 10 - cost


def test_settling_after_delivery_counts_each_image_once(engine, user_and_key):
    user = user_and_key[0]
    set_workspace(engine, user, credits=10)
    admission = engine.meter.admit(user.workspace_id, credits=1)
    params = GenerationParams(prompt="once", model="tiny-sd", **SMALL)
    engine.submit_generation(user, params, store=False, charge_id=admission.charge_id, cost=1).future.result()
    admission.succeeded(images=1, credits=1)
    engine.meter.settle(admission)
    engine.meter.settle(admission)
    with session_scope(engine.db) as session:
        day = session.exec(select(UsageCounter).where(UsageCounter.workspace_id == user.workspace_id,
                                                      UsageCounter.window == "day")).one()
        assert session.get(PendingCharge, admission.charge_id) is None
    assert (day.requests, day.images, day.credits) == (1, 1, 1)


def test_a_caller_that_never_hears_of_its_delivered_image_still_pays_for_it(engine, user_and_key):
    user = user_and_key[0]
    set_plan(engine, user)
    set_workspace(engine, user, credits=10)
    admission = engine.meter.admit(user.workspace_id, credits=1)
    params = GenerationParams(prompt="gone", model="tiny-sd", **SMALL)
    engine.submit_generation(user, params, store=False, charge_id=admission.charge_id, cost=1).future.result()
    engine.meter.settle(admission)  # no succeeded(): the caller hung up before the image came back
    assert engine.meter.plan_of(user.workspace_id)[0].credits == 9


# -- 9. admission before any fetch or decode -------------------------------------------------------------

@pytest.mark.parametrize("action", ["edit", "remove_background"])
def test_a_key_out_of_credits_or_over_its_limit_fetches_nothing(client, engine, user_and_key, auth, local_site,
                                                                action):
    engine.settings.allow_private_fetch = True
    set_plan(engine, user_and_key[0], requests_per_day=1)  # not per minute: a minute may turn mid-test
    set_workspace(engine, user_and_key[0], credits=0)
    body = {"action": action, "prompt": "x", "model": "tiny-sd", "input_image": f"{local_site}/img.png"}
    refused(client.post("/api/v1/image-studio", headers=auth, json=body), 402, "insufficient_credits")
    set_workspace(engine, user_and_key[0], credits=100)
    client.post("/api/v1/generate", headers=auth, json={"prompt": "uses the day", **SMALL})
    refused(client.post("/api/v1/image-studio", headers=auth, json=body), 429, "rate_limited")
    assert Handler.hits == []
    with session_scope(engine.db) as session:
        assert not session.exec(select(Job).where(Job.kind == action)).all()


# -- 7. strict types on the public API ---------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/generate", {"prompt": "x", "width": "256", "height": 256}, "width"),
    ("/api/v1/generate", {"prompt": "x", **SMALL, "async": "yes"}, "async"),
    ("/api/v1/generate", {"prompt": "x", **SMALL, "seed": "42"}, "seed"),
    ("/api/v1/generate", {"prompt": "x", **SMALL, "num_inference_steps": True}, "num_inference_steps"),
    ("/api/v1/generate", {"items": [{"prompt": "x", "width": "256", "height": 256}]}, None),
    ("/api/v1/generate", {"prompt": 42, **SMALL}, "prompt"),
    ("/api/v1/image-studio", {"prompt": "x", "width": "256", "height": 256}, "width"),
    ("/api/v1/image-studio", {"prompt": "x", "async": 1}, "async"),
    ("/api/v1/image-studio", {"prompt": "x", "strength": "0.5"}, "strength"),
    ("/api/v1/prompt/enhance", {"prompt": 5}, "prompt"),
    ("/api/v1/auth/login", {"email": ["a@b.c"], "password": "x"}, "email"),
])
def test_wrong_types_are_refused_not_coerced(client, engine, user_and_key, auth, path, body, field):
    set_plan(engine, user_and_key[0])
    response = client.post(path, headers=auth, json=body)
    if path.endswith("/generate") and "items" in body:  # a batch item fails alone, in a 200
        item = response.json()["data"]["results"][0]
        assert item["success"] is False and item["error_code"] == "validation_error", item
        return
    error = refused(response, 422, "validation_error")
    if field:
        assert error["field"] == field, error


def test_ints_still_count_as_floats(client, engine, user_and_key, auth):
    set_plan(engine, user_and_key[0])
    response = client.post("/api/v1/generate", headers=auth, json={"prompt": "x", **SMALL, "guidance_scale": 5})
    assert response.status_code == 200 and response.json()["data"]["guidance_scale"] == 5.0


# -- 10. one error policy, a real health check, log retention, revocable sessions, separate keys, secrets at rest

def test_an_internal_failure_shows_a_safe_message_and_logs_the_traceback(client, engine, user_and_key, auth,
                                                                         monkeypatch, caplog):
    set_plan(engine, user_and_key[0])

    def broken(*_args, **_kwargs):
        raise RuntimeError("CUDA error at /home/ops/secret-model-dir/unet.py:42")

    monkeypatch.setattr("engine.generation.jobs.run_pipeline", broken)
    response = client.post("/api/v1/generate", headers=auth, json={"prompt": "x", **SMALL})
    error = refused(response, 500, "generation_failed")
    assert "secret-model-dir" not in response.text and "internal error" in error["message"]
    job_id = client.post("/api/v1/generate", headers=auth, json={"prompt": "x", **SMALL, "async": True}).json()[
        "data"]["job_id"]
    deadline = time.monotonic() + 30
    while (job := client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"])["status"] in ("queued",
                                                                                                   "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "failed" and "secret-model-dir" not in job["error"] and job_id in job["error"]
    assert "secret-model-dir" in caplog.text and "Traceback" in caplog.text


def test_health_probes_the_device_and_reports_the_worker(client, engine, monkeypatch):
    checks = client.get("/api/v1/health").json()["data"]["checks"]
    assert checks["device"]["status"] == "ok" and "busy_for_s" in checks["worker"]

    def lost(*_args, **_kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr("engine.service.torch.ones", lost)
    monkeypatch.setattr("engine.service.PROBE_REUSE_S", 0.0)  # not the last second's answer: a new probe
    response = client.get("/api/v1/health")
    assert response.status_code == 503 and response.json()["status"] == "degraded"
    assert response.json()["data"]["checks"]["device"]["status"] == "error"


def test_health_checks_at_the_same_moment_share_one_probe(client, engine, monkeypatch):
    """Under load many health checks arrive together: they share a probe, so none reads another's in-flight
    probe as a stuck device (seen as spurious 503s in a 200-client load run)."""
    import torch

    started = []
    real_ones = torch.ones

    def slow_ones(*args, **kwargs):
        started.append(threading.get_ident())
        time.sleep(0.3)
        return real_ones(*args, **kwargs)

    monkeypatch.setattr("engine.service.torch.ones", slow_ones)
    monkeypatch.setattr("engine.service.PROBE_REUSE_S", 0.0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine._probe_device())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"] * 8 and len(started) == 1


def test_old_api_log_rows_are_removed(client, engine, auth):
    from engine.data.tables import ApiLog

    client.get("/api/v1/usage", headers=auth)
    with session_scope(engine.db) as session:
        session.add(ApiLog(method="GET", endpoint="/api/v1/usage", status=200, duration_ms=1, request_id="old",
                           created_at=datetime.now(UTC) - timedelta(days=engine.settings.log_retention_days + 1)))
        session.commit()
    assert engine.housekeeping()["api_log_rows"] == 1
    with session_scope(engine.db) as session:
        assert [row.request_id for row in session.exec(select(ApiLog)).all() if row.request_id == "old"] == []
        assert session.exec(select(ApiLog)).all()  # the recent ones stay
    engine.settings.log_retention_days = 0
    assert engine.housekeeping()["api_log_rows"] == 0


def test_session_tokens_can_be_revoked(client, engine):
    from engine.accounts.users import hash_password
    from tests.api.helpers import set_user
    from tests.conftest import make_user

    user, _ = make_user(engine, "rev@example.com")
    set_user(engine, user, password_hash=hash_password("correct horse battery"))
    tokens = [client.post("/api/v1/auth/login", json={"email": user.email, "password": "correct horse battery"})
              .json()["data"]["access_token"] for _ in range(2)]
    headers = [{"Authorization": f"Bearer {token}"} for token in tokens]
    assert all(client.get("/api/v1/auth/me", headers=h).status_code == 200 for h in headers)
    assert client.post("/api/v1/auth/logout", headers=headers[0]).json()["data"] == {"revoked": True}
    for h in headers:
        error = refused(client.get("/api/v1/auth/me", headers=h), 401, "unauthorized")
        assert "revoked" in error["message"]
    fresh = client.post("/api/v1/auth/login", json={"email": user.email, "password": "correct horse battery"})
    fresh_headers = {"Authorization": f"Bearer {fresh.json()['data']['access_token']}"}
    assert client.get("/api/v1/auth/me", headers=fresh_headers).status_code == 200
    engine.accounts.change_password(user.id, "correct horse battery", "a new long password")
    refused(client.get("/api/v1/auth/me", headers=fresh_headers), 401, "unauthorized")


def test_each_use_has_its_own_key(engine):
    keys = engine.keys
    uses = {keys.session_tokens, keys.image_links, keys.studio_cookies, engine.secret_key}
    assert len(uses) == 4  # no two uses share a key, and none is the server secret itself


def test_old_signed_links_keep_working_until_they_expire(client, engine, pro_auth):
    from engine.storage.gallery import signed_image_path

    image_id = client.post("/api/v1/generate", headers=pro_auth, json={"prompt": "linked", **SMALL}).json()[
        "data"]["id"]
    assert client.get(signed_image_path(image_id, engine.secret_key)).status_code == 200  # made by 0.1
    assert client.get(signed_image_path(image_id, engine.keys.image_links)).status_code == 200
    assert client.get(signed_image_path(image_id, "another-secret")).status_code == 404


def test_the_text_model_api_key_is_encrypted_at_rest(engine):
    from engine.data.tables import AppSetting

    engine.runtime.set("text_model", {"provider": "openai", "base_url": "http://10.0.0.5/v1", "model": "m",
                                      "api_key": "sk-vendor-very-secret"})
    with session_scope(engine.db) as session:
        stored = session.get(AppSetting, "text_model").value
    assert stored["api_key"].startswith("enc:v1:") and "sk-vendor-very-secret" not in str(stored)
    assert engine.runtime.get("text_model")["api_key"] == "sk-vendor-very-secret"


def test_a_plain_text_key_from_an_earlier_version_is_encrypted_at_start(engine, settings):
    from engine.data.tables import AppSetting
    from engine.service import ImageEngine

    with session_scope(engine.db) as session:
        session.merge(AppSetting(key="text_model", value={"provider": "openai", "api_key": "sk-plain"}))
        session.commit()
    restarted = ImageEngine(settings, db=engine.db)
    with session_scope(engine.db) as session:
        assert session.get(AppSetting, "text_model").value["api_key"].startswith("enc:v1:")
    assert restarted.runtime.get("text_model")["api_key"] == "sk-plain"


def test_parallel_stored_generations_and_admissions_never_deadlock(client, engine, user_and_key, auth):
    """Images recorded (and billed) while other requests are admitted: on PostgreSQL an admission's workspace
    lock once blocked the foreign-key check of an image being recorded, which held the counters the
    admission wanted next (a deadlock: 503s under 16 clients)."""
    import asyncio

    import httpx

    set_plan(engine, user_and_key[0], storage_enabled=True, max_concurrent_jobs=100)
    set_workspace(engine, user_and_key[0], credits=1000)

    async def closed_loop():  # eight clients, each sending its next request when the last is answered
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as http:
            async def one_client(n):
                return [(await http.post("/api/v1/generate", headers=auth, json={
                    "prompt": f"boat {n}.{i}", **SMALL, "steps": 1})).status_code for i in range(3)]

            return [status for statuses in await asyncio.gather(*[one_client(n) for n in range(8)])
                    for status in statuses]

    statuses = asyncio.run(closed_loop())
    assert statuses == [200] * 24
    report = usage(client, auth)
    assert report["usage"]["today"]["requestCount"] == report["usage"]["today"]["imageCount"] == 24
