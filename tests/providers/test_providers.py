"""The proprietary models through their vendors, against local stand-ins of BFL's, Leonardo.Ai's and Stability
AI's APIs (tests/providers/vendors.py): success after polling, the vendors' errors as our errors, a vendor
timeout, a vendor that returns no image, outbound calls only to the configured hosts; nothing charged for a
failure, and results recorded exactly like local ones."""

import base64
import io
import json

import pytest
from PIL import Image

from engine.data.db import session_scope
from engine.data.tables import Workspace
from engine.generation.params import read_png_metadata
from tests.api.helpers import set_plan, set_workspace
from tests.conftest import make_user
from tests.providers.vendors import BflStandIn, LeonardoStandIn, StabilityStandIn, png_of

SIZE = {"width": 512, "height": 512}


@pytest.fixture
def bfl(engine):
    stand_in = BflStandIn()
    engine.runtime.set("provider_bfl", {"api_key": stand_in.key, "base_url": stand_in.base, "poll_interval_s": 0.02,
                                        "timeout_s": 10})
    yield stand_in
    stand_in.close()


@pytest.fixture
def leonardo(engine):
    stand_in = LeonardoStandIn()
    engine.runtime.set("provider_leonardo", {"api_key": stand_in.key, "base_url": stand_in.api_base,
                                             "poll_interval_s": 0.02, "timeout_s": 10})
    yield stand_in
    stand_in.close()


@pytest.fixture
def stability(engine):
    stand_in = StabilityStandIn()
    engine.runtime.set("provider_stability", {"api_key": stand_in.key, "base_url": stand_in.base})
    engine.runtime.set("background_removal", "stability")
    yield stand_in
    stand_in.close()


@pytest.fixture
def member(engine):
    user, key = make_user(engine, "vendor@example.com", plan="pro")
    set_plan(engine, user, storage_enabled=True, storage_quota_mb=100, monthly_credits=0)
    set_workspace(engine, user, credits=100)
    return user, {"Authorization": f"Bearer {key}"}


def balance(engine, user) -> int:
    with session_scope(engine.db) as session:
        return session.get(Workspace, user.workspace_id).credits


def generate(client, auth, model, **extra):
    return client.post("/api/v1/generate", json={"prompt": "a lighthouse in a storm", "model": model, "seed": 42,
                                                 **SIZE, **extra}, headers=auth)


def test_flux_2_pro_through_bfl_lands_like_a_local_image(client, engine, bfl, member):
    user, auth = member
    response = generate(client, auth, "flux-2-pro")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["model"] == "flux-2-pro" and data["storage"]["stored"] is True
    # Submitted with BFL's documented fields, polled until Ready, then the signed sample downloaded.
    assert bfl.bodies == [{"prompt": "a lighthouse in a storm", "width": 512, "height": 512, "seed": 42,
                           "output_format": "png", "safety_tolerance": 2}]
    polls = [call for call in bfl.calls if call[1] == "/v1/get_result"]
    assert len(polls) == bfl.polls_before_ready + 1
    png = client.get(f"/api/v1/images/{data['id']}", headers=auth).content
    meta = read_png_metadata(png)
    assert (meta["model"], meta["seed"], meta["provider"], meta["vendor_model"]) == ("flux-2-pro", 42, "bfl",
                                                                                       "flux-2-pro")
    assert balance(engine, user) == 100 - 8  # the vendor route's price, not a local model's
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]
    assert usage["imageCount"] == 1 and usage["requestCount"] == 1
    assert client.get("/api/v1/images", headers=auth).json()["data"]["total"] == 1


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("no_credit", 503, "provider_out_of_credit"),
    ("invalid", 400, "invalid_request"),
    ("moderated", 400, "content_moderated"),
    ("failed", 503, "provider_unavailable"),
    ("down", 503, "provider_unavailable"),
    ("not_image", 503, "provider_unavailable"),
    ("foreign_poll", 503, "provider_unavailable"),
])
def test_bfl_failures_are_clear_errors_and_cost_nothing(client, engine, bfl, member, mode, status, code):
    user, auth = member
    bfl.mode = mode
    response = generate(client, auth, "flux-2-pro")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and "request_id" in response.json()
    assert bfl.key not in response.text
    assert balance(engine, user) == 100  # nothing charged
    assert client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]["imageCount"] == 0
    if mode == "foreign_poll":  # never called: the polling URL named a host that is not BFL's configured one
        assert "localhost" in error["message"] and all(path != "/v1/get_result" for _, path in bfl.calls)
    if mode == "not_image":
        assert "not an image" in error["message"]


def test_a_vendor_that_never_finishes_times_out(client, engine, bfl, member):
    user, auth = member
    engine.runtime.set("provider_bfl", engine.runtime.get("provider_bfl") | {"timeout_s": 0.3})
    bfl.mode = "pending"
    response = generate(client, auth, "flux-2-pro")
    assert response.status_code == 504 and response.json()["error"]["code"] == "provider_timeout"
    assert balance(engine, user) == 100


@pytest.mark.parametrize("slug", ["lucid-origin", "phoenix-1"])
def test_leonardo_models_async_with_their_model_ids(client, engine, leonardo, member, slug):
    user, auth = member
    accepted = client.post("/api/v1/generate", json={"prompt": "a fox", "model": slug, "async": True, **SIZE},
                           headers=auth)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["data"]["job_id"]
    from tests.support import wait_until

    assert wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"]["status"]
                      == "succeeded", 30)
    (body,) = leonardo.bodies
    model_ids = {"lucid-origin": "7b592283-e8a7-4c5a-9ba6-d18c31f258b9",
                 "phoenix-1": "de7d3faf-762f-48e0-b3b7-9d0ac3a3fcf3"}
    assert body["modelId"] == model_ids[slug] and body["num_images"] == 1 and body["alchemy"] is False
    assert balance(engine, user) == 100 - 6


def test_leonardo_errors_and_a_cancel_that_reaches_the_vendor(client, engine, leonardo, member):
    user, auth = member
    leonardo.mode = "no_credit"
    response = generate(client, auth, "lucid-origin")
    assert response.status_code == 503 and response.json()["error"]["code"] == "provider_out_of_credit"
    leonardo.mode = "pending"
    accepted = client.post("/api/v1/generate", json={"prompt": "a fox", "model": "phoenix-1", "async": True,
                                                     **SIZE}, headers=auth).json()["data"]
    from tests.support import wait_until

    assert wait_until(lambda: leonardo.tasks, 10)
    assert client.delete(f"/api/v1/jobs/{accepted['job_id']}", headers=auth).status_code == 200
    assert wait_until(lambda: client.get(f"/api/v1/jobs/{accepted['job_id']}", headers=auth)
                      .json()["data"]["status"] == "cancelled", 10)
    assert wait_until(lambda: any(method == "DELETE" for method, _ in leonardo.calls), 10)
    assert balance(engine, user) == 100


def test_stability_removes_backgrounds_when_the_admin_chooses_it(client, engine, stability, member):
    user, auth = member
    picture = "data:image/png;base64," + base64.b64encode(png_of(300, 200)).decode()
    response = client.post("/api/v1/image-studio", json={"prompt": "remove background", "input_image": picture},
                           headers=auth)
    assert response.status_code == 200, response.text
    assert stability.bodies == [{"output_format": "png", "accept": "image/*"}]
    data = response.json()["data"]
    png = client.get(f"/api/v1/images/{data['id']}", headers=auth).content
    with Image.open(io.BytesIO(png)) as cut:
        assert cut.mode == "RGBA" and cut.size == (300, 200)
    assert read_png_metadata(png)["provider"] == "stability"
    assert balance(engine, user) == 100 - 2  # the seed document's flat price
    stability.mode = "moderated"
    refused = client.post("/api/v1/image-studio", json={"prompt": "remove background", "input_image": picture},
                          headers=auth)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_moderated"
    assert balance(engine, user) == 100 - 2


def test_each_provider_has_a_connection_test(engine, bfl, leonardo, stability):
    assert "1234.5 credits" in engine.test_provider("bfl")
    assert "3500 API credits" in engine.test_provider("leonardo")
    assert "42.0 credits" in engine.test_provider("stability")
    engine.runtime.set("provider_bfl", engine.runtime.get("provider_bfl") | {"api_key": "wrong"})
    from engine.errors import ProviderUnavailable

    with pytest.raises(ProviderUnavailable, match="refused the server's API key"):
        engine.test_provider("bfl")


def test_keys_are_encrypted_at_rest_and_routes_follow_the_admin(client, engine, bfl, member):
    from engine.data.tables import AppSetting

    with session_scope(engine.db) as session:
        stored = session.get(AppSetting, "provider_bfl").value
    assert stored["api_key"] != bfl.key and bfl.key not in json.dumps(stored)
    _, auth = member
    assert generate(client, auth, "flux-2-klein-4b").status_code == 503  # open weights, absent: not routed
    engine.runtime.set("provider_routes", {"flux-2-klein-4b": "bfl", "flux-2-pro": ""})
    assert generate(client, auth, "flux-2-klein-4b").status_code == 200  # the admin sent it to BFL
    assert bfl.bodies[-1]["prompt"] == "a lighthouse in a storm"
    assert generate(client, auth, "flux-2-pro").status_code == 503  # the default route turned off
    engine.runtime.set("provider_prices", {"flux-2-klein-4b": [5, 7]})
    assert engine.credits_for(engine.prepare(__import__("engine.generation.params", fromlist=["x"])
                                             .GenerationParams(prompt="x", model="flux-2-klein-4b", **SIZE))) == 5
