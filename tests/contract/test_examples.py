"""The seed documents' request examples, run against the app: each documented field at its documented path,
each documented status code (401, 402, 403, 429 with Retry-After and retry_after, 500 with request_id)."""

import pytest

from engine.errors import GenerationFailed
from tests.api.helpers import set_plan, set_workspace
from tests.contract.examples import IMAGE_STUDIO, IMAGEAPI, SEED_MODELS, Example


def lookup(payload, path: str):
    value = payload
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def call(client, example: Example, headers: dict):
    return client.request(example.method, example.path, json=example.body,
                          headers=headers if example.auth else {})


@pytest.mark.parametrize("example", IMAGEAPI + IMAGE_STUDIO, ids=lambda e: e.name)
def test_documented_example(client, contract_engine, pro_auth, example):
    response = call(client, example, pro_auth)
    assert response.status_code == example.status, response.text
    payload = response.json()
    assert payload["success"] is True and payload["request_id"].startswith("req_")
    for path in example.fields:
        assert lookup(payload, path) is not None, path


def test_generated_images_are_data_urls_or_links_and_seed_and_model_are_named(client, contract_engine, auth):
    data = client.post("/api/v1/generate", json={"prompt": "a sunset over mountains", "width": 512, "height": 512,
                                                  "seed": 12345}, headers=auth).json()["data"]
    assert data["image"].startswith("data:image/png;base64,")  # storage off on Free: a data URL, as documented
    assert data["seed"] == 12345 and data["model"] == "tiny-sd"
    assert data["storage"] == {"enabled": False, "stored": False, "plan": "No cloud storage", "plan_slug": "free"}


def test_hosted_link_and_storage_plan_in_words(client, contract_engine, pro_auth):
    data = client.post("/api/v1/generate", json={"prompt": "a sunset over mountains"}, headers=pro_auth).json()["data"]
    assert data["image"].startswith("http") and data["storage"]["stored"] is True
    assert data["storage"]["plan"] == "5 GB cloud storage"  # the document: "10 GB cloud storage"
    assert client.get(data["image"]).status_code == 200


def test_every_documented_model_slug_is_listed(client):
    listed = {m["slug"]: m for m in client.get("/api/v1/models").json()["data"]}
    for slug in SEED_MODELS + ("flux-2-pro",):
        assert slug in listed and listed[slug]["name"] and listed[slug]["description"]


def test_image_studio_reads_the_way_both_code_examples_do(client, contract_engine, pro_auth):
    body = {"prompt": "A watercolor painting of Paris in autumn", "model": "flux-2-pro", "aspect_ratio": "4:3"}
    payload = client.post("/api/v1/image-studio", json=body, headers=pro_auth).json()
    assert payload["image_url"] == payload["data"]["image_url"]  # JS: data.image_url; Python: json()['image_url']
    assert payload["data"]["model"] == "tiny-flux" and payload["data"]["requested_model"] == "flux-2-pro"
    width, height = payload["data"]["width"], payload["data"]["height"]
    assert abs(width / height - 4 / 3) < 0.1


def test_background_removal_costs_a_flat_two_credits(client, contract_engine, pro_auth, tiny_png_data_url):
    body = {"prompt": "remove background", "input_image": tiny_png_data_url}
    response = client.post("/api/v1/image-studio", json=body, headers=pro_auth)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["data"]["action"] == "remove_background" and payload["data"]["credits_used"] == 2
    assert payload["image_url"] == payload["data"]["image_url"]
    clear_bg = client.post("/api/v1/image-studio", json=body | {"prompt": "clear bg"}, headers=pro_auth).json()
    assert clear_bg["data"]["action"] == "remove_background"


def test_enhance_prompt_is_free_of_credits_and_quota(client, contract_engine, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_day=1, monthly_credits=5)
    set_workspace(engine, user_and_key[0], credits=5)
    for _ in range(3):  # more than the daily quota of requests
        response = client.post("/api/v1/image-studio", json={"action": "enhance_prompt", "prompt": "a dog on a beach"},
                               headers=auth)
        assert response.status_code == 200 and response.json()["data"]["credits_used"] == 0
        assert client.post("/api/v1/prompt/enhance", json={"prompt": "robot reading a book", "tone": "anime, cozy"},
                           headers=auth).status_code == 200
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["usage"]["today"]["requestCount"] == 0 and usage["credits"]["balance"] == 5


# -- documented errors ---------------------------------------------------------------------------

def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["success"] is False and payload["request_id"].startswith("req_")
    assert payload["request_id"] == response.headers["x-request-id"]
    return payload


@pytest.mark.parametrize("path,body", [("/api/v1/generate", IMAGEAPI[0].body), ("/api/v1/image-studio",
                                                                               IMAGE_STUDIO[0].body),
                                       ("/api/v1/usage", None)])
def test_401_missing_or_invalid_key(client, contract_engine, path, body):
    method = "GET" if body is None else "POST"
    for headers in ({}, {"Authorization": "Bearer YOUR_API_KEY"}, {"Authorization": "Bearer sk_your_key"}):
        assert_error(client.request(method, path, json=body, headers=headers), 401)


def test_402_insufficient_credits(client, contract_engine, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], monthly_credits=0)
    set_workspace(engine, user_and_key[0], credits=0)
    for path, body in (("/api/v1/image-studio", IMAGE_STUDIO[2].body), ("/api/v1/generate", IMAGEAPI[0].body)):
        payload = assert_error(client.post(path, json=body, headers=auth), 402)
        assert payload["error"]["code"] == "insufficient_credits"


def test_403_suspended_or_no_plan(client, contract_engine, auth, user_and_key, engine):
    set_workspace(engine, user_and_key[0], suspended=True)
    assert "suspended" in assert_error(client.post("/api/v1/generate", json=IMAGEAPI[0].body, headers=auth),
                                       403)["error"]["message"]
    set_workspace(engine, user_and_key[0], suspended=False, plan_slug=None)
    assert "no plan" in assert_error(client.get("/api/v1/usage", headers=auth), 403)["error"]["message"]


def test_429_has_retry_after_header_and_retry_after_seconds(client, contract_engine, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_minute=1)
    assert client.post("/api/v1/generate", json=IMAGEAPI[0].body, headers=auth).status_code == 200
    payload = assert_error(client.post("/api/v1/generate", json=IMAGEAPI[0].body, headers=auth), 429)
    retry_after = int(client.post("/api/v1/generate", json=IMAGEAPI[0].body, headers=auth).headers["Retry-After"])
    assert 1 <= payload["retry_after"] <= 60 and 1 <= retry_after <= 60
    assert payload["error"]["retry_after"] == payload["retry_after"] and payload["error"]["limit"] == "minute"


def test_500_when_generation_fails_carries_the_request_id(client, contract_engine, auth, monkeypatch):
    def broken(*_args, **_kwargs):
        raise GenerationFailed("generation failed: the pipeline broke")

    monkeypatch.setattr("engine.generation.jobs.run_pipeline", broken)
    payload = assert_error(client.post("/api/v1/generate", json=IMAGEAPI[0].body, headers=auth), 500)
    assert payload["error"]["code"] == "generation_failed"
