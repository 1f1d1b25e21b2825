import base64
import io

import pytest
from PIL import Image

from engine.errors import InvalidRequest
from engine.generation.params import read_png_metadata


def decode(data_url: str) -> bytes:
    assert data_url.startswith("data:image/png;base64,")
    return base64.b64decode(data_url.split(",", 1)[1])


def test_generate_returns_a_png_of_the_asked_size_with_metadata(client, auth):
    body = {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "model": "tiny-sd",
            "width": 256, "height": 320, "steps": 2, "seed": 1234}
    response = client.post("/api/v1/generate", json=body, headers=auth)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["success"] is True and payload["request_id"] == response.headers["x-request-id"]
    data = payload["data"]
    png = decode(data["image"])
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (256, 320)
    meta = read_png_metadata(png)
    assert meta == {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "model": "tiny-sd",
                    "width": 256, "height": 320, "steps": 2, "guidance_scale": 5.0, "seed": 1234}
    assert {k: data[k] for k in ("model", "width", "height", "steps", "seed")} == \
        {"model": "tiny-sd", "width": 256, "height": 320, "steps": 2, "seed": 1234}
    assert data["id"].startswith("img_") and data["job_id"].startswith("job_")


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-sdxl", "tiny-flux"])
def test_same_seed_gives_the_same_bytes(client, auth, model):
    body = {"prompt": "a red fox", "model": model, "width": 256, "height": 256, "seed": 99}
    first = client.post("/api/v1/generate", json=body, headers=auth).json()["data"]["image"]
    again = client.post("/api/v1/generate", json=body, headers=auth).json()["data"]["image"]
    other = client.post("/api/v1/generate", json=body | {"seed": 100}, headers=auth).json()["data"]["image"]
    assert first == again and first != other


def test_default_model_and_random_seed(client, auth):
    data = client.post("/api/v1/generate", json={"prompt": "x", "width": 256, "height": 256}, headers=auth).json()
    assert data["data"]["model"] == "tiny-sd" and isinstance(data["data"]["seed"], int)


def test_batch_with_one_bad_item(client, auth):
    body = {"model": "tiny-sd", "width": 256, "height": 256, "items": [
        {"prompt": "a cat", "seed": 1},
        {"prompt": "", "seed": 2},
        {"prompt": "a dog", "model": "no-such-model"},
        {"prompt": "a bird", "model": "tiny-flux", "seed": 3},
    ]}
    response = client.post("/api/v1/generate", json=body, headers=auth)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["total"], data["succeeded"], data["failed"]) == (4, 2, 2)
    ok, empty, unknown, flux = data["results"]
    # The seed API's flat item shape: success, image, seed, model, storage on the item itself.
    assert ok["success"] and ok["seed"] == 1 and ok["width"] == 256 and ok["image"].startswith("data:image/png")
    assert ok["model"] == "tiny-sd" and ok["storage"]["stored"] is False and "data" not in ok
    assert not empty["success"] and empty["error_code"] == "validation_error" and isinstance(empty["error"], str)
    assert empty["error_details"]["field"] == "items.1.prompt" and "items.1.prompt" in empty["error"]
    assert not unknown["success"] and unknown["error_code"] == "model_not_found"
    assert flux["success"] and flux["model"] == "tiny-flux"


def test_batch_over_the_plan_limit_is_refused(client, auth):
    body = {"items": [{"prompt": f"p{i}"} for i in range(5)]}  # the Free plan allows 4
    response = client.post("/api/v1/generate", json=body, headers=auth)
    assert response.status_code == 400 and response.json()["error"]["field"] == "items"


def test_missing_and_bad_keys_get_401(client, auth, engine):
    body = {"prompt": "x"}
    for headers in ({}, {"Authorization": "Bearer sk_live_nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer " + auth["Authorization"][7:-2] + "zz"}):
        response = client.post("/api/v1/generate", json=body, headers=headers)
        assert response.status_code == 401, headers
        payload = response.json()
        assert payload["success"] is False and payload["error"]["code"] == "unauthorized"
        assert payload["request_id"] and response.headers["www-authenticate"] == "Bearer"


def test_revoked_key_fails_on_the_next_request(client, auth, engine):
    from engine.accounts.users import revoke_api_key
    from engine.data.db import session_scope

    assert client.post("/api/v1/generate", json={"prompt": "x", "width": 256, "height": 256},
                       headers=auth).status_code == 200
    with session_scope(engine.db) as session:
        revoke_api_key(session, auth["Authorization"][7:23])
    response = client.post("/api/v1/generate", json={"prompt": "x"}, headers=auth)
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


@pytest.mark.parametrize("body,field", [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"prompt": "x", "negative_prompt": "n" * 1001}, "negative_prompt"),
    ({"prompt": "x", "width": 100}, "width"),
    ({"prompt": "x", "height": 4096}, "height"),
    ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "steps": 500}, "steps"),
    ({"prompt": "x", "seed": -5}, "seed"),
    ({"prompt": "x", "width": "wide"}, "width"),
    ({"prompt": 42}, "prompt"),
    ({"items": []}, "items"),
])
def test_validation_errors_name_the_field(client, auth, body, field):
    response = client.post("/api/v1/generate", json=body, headers=auth)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"]["code"] == "validation_error" and payload["error"]["field"] == field
    assert field in payload["error"]["message"] and payload["request_id"]


def test_bad_json_unknown_and_unavailable_models(client, auth):
    response = client.post("/api/v1/generate", content=b"{not json", headers=auth | {"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    response = client.post("/api/v1/generate", json={"prompt": "x", "model": "dall-e-9"}, headers=auth)
    assert response.status_code == 400 and response.json()["error"]["field"] == "model"
    response = client.post("/api/v1/generate", json={"prompt": "x", "model": "phoenix-1"}, headers=auth)
    assert response.status_code == 503 and "no open weights" in response.json()["error"]["message"]
    response = client.post("/api/v1/generate", json={"prompt": "x", "model": "flux-schnell"}, headers=auth)
    assert response.status_code == 503
    assert "imagestudio models pull flux-schnell" in response.json()["error"]["message"]


def test_generation_records_and_files(client, pro_auth, engine):

    from engine.data.db import session_scope
    from engine.data.tables import ImageRecord, Job

    data = client.post("/api/v1/generate", json={"prompt": "x", "width": 256, "height": 256},
                       headers=pro_auth).json()
    with session_scope(engine.db) as session:
        record = session.get(ImageRecord, data["data"]["id"])
        job = session.get(Job, data["data"]["job_id"])
    assert job.status == "succeeded" and job.image_id == record.id
    assert data["data"]["storage"] == {"enabled": True, "stored": True, "plan": "5 GB cloud storage", "plan_slug": "pro"}
    hosted = client.get(data["data"]["image_url"])  # a signed link: no auth header needed
    assert hosted.status_code == 200 and hosted.headers["content-type"] == "image/png"
    assert engine.store.read(record.file_path) == hosted.content


def test_the_configured_default_runs_and_a_default_without_weights_says_how_to_pull(client, auth, engine):
    engine.set_default_model("tiny-flux")  # what `models pull --default` and the studio's first run set
    data = client.post("/api/v1/generate", json={"prompt": "x", "width": 256, "height": 256}, headers=auth).json()
    assert data["data"]["model"] == "tiny-flux"
    listed = {m["slug"]: m["default"] for m in client.get("/api/v1/models").json()["data"]}
    assert listed["tiny-flux"] and not listed["tiny-sd"]
    engine.runtime.set("default_model", "flux-schnell")  # a fresh box: the env default, no weights pulled
    response = client.post("/api/v1/generate", json={"prompt": "x"}, headers=auth)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and error["field"] == "model" and response.json()["request_id"]
    assert "`imagestudio models pull flux-schnell`" in error["message"]
    assert "models ready here: " in error["message"] and "tiny-sd" in error["message"]
    with pytest.raises(InvalidRequest, match="upscale model"):
        engine.set_default_model("sd-x4-upscaler")
