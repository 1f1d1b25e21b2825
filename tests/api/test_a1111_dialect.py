"""The AUTOMATIC1111 dialect (/sdapi/v1): the real `webuiapi` client against a running server, then A1111's error
shapes, limits, credits, idempotency and the API log in process."""

import base64
import io
import json
import threading

import httpx
import numpy as np
import pytest
import webuiapi
from PIL import Image

from tests.api.helpers import set_plan, set_workspace
from tests.server_process import Server, create_key, server_env
from tests.support import wait_until

SMALL = {"width": 256, "height": 256}


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    data_dir = tmp_path_factory.mktemp("a1111") / "data"
    env = server_env(data_dir, models_dir)
    # Studio plan: every image counts as a request, and these tests make many in a minute.
    keys = {name: create_key(env, f"{name}@example.com", plan=plan)
            for name, plan in (("ann", "studio"), ("bob", "studio"), ("cat", "studio"), ("fay", "free"))}
    running = Server(env, data_dir.parent / "server.log").start()
    yield running, keys
    running.stop()


def client(server, name="ann") -> webuiapi.WebUIApi:
    """webuiapi as A1111 users configure it for --api-auth: Basic auth, the API key as the password."""
    running, keys = server
    return webuiapi.WebUIApi(baseurl=f"{running.base}/sdapi/v1", username=f"{name}@example.com", password=keys[name])


def basic(server, name="ann") -> dict[str, str]:
    token = base64.b64encode(f"{name}:{server[1][name]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_txt2img_batches_with_consecutive_seeds(server):
    result = client(server).txt2img(prompt="a red fox in fresh snow", steps=2, batch_size=2, n_iter=2, seed=1234,
                                    cfg_scale=5, **SMALL)
    assert len(result.images) == 4 and all(image.size == (256, 256) for image in result.images)
    assert len({image.tobytes() for image in result.images}) == 4  # each its own seed
    info = result.info
    assert info["all_seeds"] == [1234, 1235, 1236, 1237] and info["seed"] == 1234
    assert info["sd_model_name"] == "tiny-sd" and info["sampler_name"] == "Euler a"  # webuiapi's default sampler
    assert info["batch_size"] == 2 and info["cfg_scale"] == 5 and info["steps"] == 2
    assert len(info["infotexts"]) == 4 and "Seed: 1235" in info["infotexts"][1]
    assert len(info["image_ids"]) == 4 and info["stored"] is True and info["credits_used"] == 4
    assert info["warnings"] == []  # everything else webuiapi sends is at a value that changes nothing
    assert result.parameters["prompt"] == "a red fox in fresh snow" and result.parameters["n_iter"] == 2


def test_same_seed_same_image_and_samplers_differ(server):
    api = client(server)
    common = dict(prompt="a lighthouse at dusk", steps=3, seed=77, **SMALL)
    euler = api.txt2img(sampler_name="Euler", **common)
    again = api.txt2img(sampler_name="Euler", **common)
    karras = api.txt2img(sampler_name="DPM++ 2M", scheduler="Karras", **common)
    assert np.array_equal(pixels(euler.image), pixels(again.image))
    assert not np.array_equal(pixels(euler.image), pixels(karras.image))
    assert karras.info["sampler_name"] == "DPM++ 2M" and karras.info["scheduler"] == "karras"
    assert "Schedule type: Karras" in karras.info["infotexts"][0]
    assert {"Euler a", "DPM++ 2M", "UniPC", "DDIM"} <= set(api.util_get_sampler_names())
    assert {"automatic", "karras", "exponential"} <= set(api.util_get_scheduler_names())


def test_img2img_and_inpainting(server):
    api = client(server)
    source = Image.effect_noise((256, 256), 60).convert("RGB")
    edited = api.img2img(images=[source], prompt="a watercolor", denoising_strength=0.6, steps=4, seed=3, **SMALL)
    assert len(edited.images) == 1 and edited.image.size == (256, 256)
    assert edited.info["denoising_strength"] == 0.6 and "Denoising strength: 0.6" in edited.info["infotexts"][0]
    assert edited.parameters["init_images"] is None  # not echoed back unless include_init_images

    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (128, 0, 256, 256))  # white (right half): repainted, A1111's convention

    def inpainted(prompt, **extra):
        return pixels(api.img2img(images=[source], mask_image=mask, prompt=prompt, denoising_strength=1.0,
                                  steps=2, seed=5, **SMALL, **extra).image)

    first, second = inpainted("a blue door"), inpainted("a field of sunflowers at noon")
    kept, repainted = np.abs(first[:, :64] - second[:, :64]).mean(), np.abs(first[:, 192:] - second[:, 192:]).mean()
    assert repainted > 4 * kept + 0.5, (kept, repainted)
    # inpainting_mask_invert=1: black is repainted instead.
    first, second = (inpainted(prompt, inpainting_mask_invert=1) for prompt in ("a blue door", "sunflowers"))
    kept, repainted = np.abs(first[:, 192:] - second[:, 192:]).mean(), np.abs(first[:, :64] - second[:, :64]).mean()
    assert repainted > 4 * kept + 0.5, (kept, repainted)


def test_progress_and_interrupt_are_the_callers_own(server):
    ann, bob = client(server, "ann"), client(server, "bob")
    outcome = {}
    # Slow enough to be seen running (8 images × 50 steps at 512 px take many seconds here); interrupted early.
    worker = threading.Thread(target=lambda: outcome.update(result=ann.txt2img(
        prompt="a slow one", steps=50, n_iter=8, seed=9, width=512, height=512)))
    worker.start()
    try:
        assert wait_until(lambda: ann.get_progress()["state"]["sampling_step"] >= 1, timeout=120)
        assert wait_until(lambda: ann.get_progress()["current_image"] is not None, timeout=60)
        running = ann.get_progress()
        assert 0 < running["progress"] <= 1 and running["eta_relative"] >= 0
        assert 1 <= running["state"]["job_count"] <= 8 and running["state"]["sampling_steps"] == 50
        assert Image.open(io.BytesIO(base64.b64decode(running["current_image"]))).format == "PNG"
        quiet = httpx.get(f"{server[0].base}/sdapi/v1/progress", params={"skip_current_image": "true"},
                          headers=basic(server, "ann"), timeout=30).json()
        assert quiet["current_image"] is None and quiet["state"]["job_count"] >= 1
        # Another user sees none of it and stops none of it.
        assert bob.get_progress()["state"]["job_count"] == 0 and bob.get_progress()["progress"] == 0
        assert bob.interrupt() == {"cancelled": 0}
        assert ann.get_progress()["state"]["job_count"] >= 1
        assert ann.interrupt()["cancelled"] >= 1
    finally:
        worker.join(timeout=300)
    assert not worker.is_alive()
    result = outcome["result"]
    assert len(result.images) < 8 and result.info["interrupted"] is True
    assert any("interrupted" in warning for warning in result.info["warnings"])
    assert result.info["credits_used"] == len(result.images)  # what was cancelled is not charged
    assert wait_until(lambda: ann.get_progress()["state"]["job_count"] == 0)


def test_model_switch_is_per_user_and_per_request(server):
    cat, ann = client(server, "cat"), client(server, "ann")
    titles = cat.util_get_model_names()
    assert {"tiny-sd", "tiny-sdxl", "tiny-flux"} <= {title.split(" [")[0] for title in titles}
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(cat.get_sd_models()[0])
    cat.util_set_model("tiny-sdxl")  # finds the closest title, then POSTs /options
    assert cat.util_get_current_model().startswith("tiny-sdxl [")
    assert ann.util_get_current_model().startswith("tiny-sd [")  # another user's choice is theirs
    assert cat.txt2img(prompt="a boat", steps=2, **SMALL).info["sd_model_name"] == "tiny-sdxl"
    flux = cat.txt2img(prompt="a boat", steps=2, override_settings={"sd_model_checkpoint": "tiny-flux"}, **SMALL)
    assert flux.info["sd_model_name"] == "tiny-flux" and flux.info["sampler_name"] is None
    assert any("flow-matching" in warning for warning in flux.info["warnings"])  # webuiapi asked for Euler a
    # Open WebUI's way: GET the options, change the checkpoint, POST them all back.
    options = cat.get_options()
    options["sd_model_checkpoint"] = "tiny-sd"
    response = httpx.post(f"{server[0].base}/sdapi/v1/options", json=options, headers=basic(server, "cat"),
                          timeout=30)
    assert response.status_code == 200 and cat.util_get_current_model().startswith("tiny-sd [")


def test_startup_lists_and_bearer_auth(server):
    api = client(server)
    assert api.get_sd_vae() == [] and api.get_upscalers() == [] and api.get_loras() == []
    assert api.get_latent_upscale_modes() == [] and api.get_scripts() == {"txt2img": [], "img2img": []}
    bearer = webuiapi.WebUIApi(baseurl=f"{server[0].base}/sdapi/v1")
    bearer.session.headers["Authorization"] = f"Bearer {server[1]['ann']}"
    assert bearer.get_options()["sd_model_checkpoint"].startswith("tiny-sd")
    anonymous = webuiapi.WebUIApi(baseurl=f"{server[0].base}/sdapi/v1")
    with pytest.raises(RuntimeError) as refused:
        anonymous.txt2img(prompt="x", steps=2, **SMALL)
    assert refused.value.args[0] == 401 and "Not authenticated" in refused.value.args[1]
    anonymous.set_auth("anyone", "sk_live_wrongwrongwrongwrong")
    with pytest.raises(RuntimeError) as refused:
        anonymous.txt2img(prompt="x", steps=2, **SMALL)
    assert refused.value.args[0] == 401 and json.loads(refused.value.args[1])["detail"] == \
        "Incorrect username or password"
    anonymous.set_auth("anyone", server[1]["ann"])  # the username is ignored, the key is what counts
    assert len(anonymous.txt2img(prompt="x", steps=2, **SMALL).images) == 1


def test_storage_follows_the_plan_and_the_log_records_it(server):
    running, keys = server
    for name, stored in (("ann", True), ("fay", False)):  # Studio stores in the gallery, Free does not
        response = httpx.post(f"{running.base}/sdapi/v1/txt2img", headers=basic(server, name), timeout=120,
                              json={"prompt": "a teapot", "steps": 2, **SMALL})
        info = json.loads(response.json()["info"])
        assert response.status_code == 200 and info["stored"] is stored
        assert info["request_id"] == response.headers["x-request-id"]
        gallery = httpx.get(f"{running.base}/api/v1/images/{info['image_ids'][0]}", timeout=30,
                            headers={"Authorization": f"Bearer {keys[name]}"})
        assert (gallery.status_code == 200) is stored
        logs = httpx.get(f"{running.base}/api/v1/logs", headers={"Authorization": f"Bearer {keys[name]}"},
                         timeout=30).json()["data"]["logs"]
        entry = next(e for e in logs if e["request_id"] == info["request_id"])
        assert entry["endpoint"] == "/sdapi/v1/txt2img" and entry["status"] == 200 and entry["credits"] == 1


# -- in process: A1111's error shapes, limits, credits, idempotency -------------------------------------------

def a1111_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert {"error", "detail", "body", "errors", "code", "request_id"} <= set(body)
    assert body["request_id"] == response.headers["x-request-id"] and isinstance(body["detail"], str)
    return body


BODY = {"prompt": "x", "steps": 2, **SMALL}


def test_401_402_429_in_a1111_shape(client, engine, user_and_key, auth):
    missing = client.post("/sdapi/v1/txt2img", json=BODY)
    error = a1111_error(missing, 401)
    assert error["detail"] == "Not authenticated" and missing.headers["www-authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"ann:sk_live_notarealkey000000").decode()
    error = a1111_error(client.post("/sdapi/v1/txt2img", json=BODY, headers={"Authorization": f"Basic {wrong}"}), 401)
    assert error["detail"] == "Incorrect username or password" and error["error"] == "Unauthorized"
    set_plan(engine, user_and_key[0], requests_per_day=1)  # not per minute: a minute may turn mid-test
    set_workspace(engine, user_and_key[0], credits=0)
    error = a1111_error(client.post("/sdapi/v1/txt2img", json=BODY, headers=auth), 402)
    assert error["error"] == "InsufficientCredits" and error["code"] == "insufficient_credits"
    set_workspace(engine, user_and_key[0], credits=100)
    assert client.post("/sdapi/v1/txt2img", json=BODY, headers=auth).status_code == 200
    limited = client.post("/sdapi/v1/txt2img", json=BODY, headers=auth)
    error = a1111_error(limited, 429)
    assert error["error"] == "RateLimited" and error["retry_after"] >= 1 and int(limited.headers["retry-after"]) >= 1


def png_b64(fmt="PNG", size=(64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("txt2img", {"sampler_name": "Euler b"}, 400, "sampler_name"),
    ("txt2img", {"sampler_name": "Euler a", "scheduler": "karras"}, 400, "scheduler"),
    ("txt2img", {"scheduler": "polyexponential"}, 400, "scheduler"),
    ("txt2img", {"override_settings": {"sd_model_checkpoint": "no-such-model"}}, 400,
     "override_settings.sd_model_checkpoint"),
    ("txt2img", {"batch_size": 5}, 400, "batch_size"),  # the Free plan: 4 images a request
    ("txt2img", {"prompt": "   "}, 400, "prompt"),
    ("txt2img", {"steps": 500}, 422, "steps"),
    ("txt2img", {"width": "wide"}, 422, "width"),
    ("txt2img", {"restore_faces": True}, 422, "restore_faces"),
    ("txt2img", {"enable_hr": True}, 422, "enable_hr"),
    ("txt2img", {"styles": ["cinematic"]}, 422, "styles"),
    ("txt2img", {"script_name": "x/y/z plot"}, 422, "script_name"),
    ("txt2img", {"alwayson_scripts": {"ControlNet": {"args": []}}}, 422, "alwayson_scripts.ControlNet"),
    ("img2img", {}, 422, "init_images"),
    ("img2img", {"init_images": ["not base64 at all!"]}, 400, "init_images.0"),
    ("img2img", {"init_images": ["data:image/png;base64,iVBORw0KGgo="]}, 400, "init_images.0"),
    ("img2img", {"init_images": [png_b64("GIF")]}, 415, "init_images.0"),
    ("img2img", {"init_images": ["https://example.com/cat.png"]}, 400, "init_images.0"),
    ("img2img", {"init_images": [png_b64()], "mask": "%%%"}, 400, "mask"),
    ("img2img", {"init_images": [png_b64()] * 3, "batch_size": 2}, 400, "init_images"),
    ("img2img", {"init_images": [png_b64()], "denoising_strength": 0}, 422, "denoising_strength"),
])
def test_bad_input_is_a_clear_4xx(client, engine, user_and_key, auth, path, body, status, field):
    set_workspace(engine, user_and_key[0], credits=100)
    error = a1111_error(client.post(f"/sdapi/v1/{path}", json={**BODY, **body}, headers=auth), status)
    assert error["field"] == field, error


def test_unknown_paths_methods_and_json(client, auth):
    assert a1111_error(client.get("/sdapi/v1/png-info", headers=auth), 404)["error"] == "NotFound"
    assert client.get("/sdapi/v1/txt2img", headers=auth).status_code == 405
    broken = client.post("/sdapi/v1/txt2img", content=b"{nope", headers=auth | {"Content-Type": "application/json"})
    assert a1111_error(broken, 400)["code"] == "invalid_json"
    options = client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}, headers=auth)
    assert a1111_error(options, 422)["field"] == "CLIP_stop_at_last_layers"


def test_unknown_fields_are_named_never_echoed(client, engine, user_and_key, auth):
    set_workspace(engine, user_and_key[0], credits=100)
    # SillyTavern posts its own request to txt2img, with its connection's url and credentials in it.
    response = client.post("/sdapi/v1/txt2img", headers=auth, json={
        **BODY, "url": "http://127.0.0.1:7860", "auth": "user:sk_live_secretsecret", "s_churn": 0.5,
        "override_settings": {"CLIP_stop_at_last_layers": 2, "sd_vae": "Automatic"}, "prompt": "<lora:x:1> a cat"})
    assert response.status_code == 200 and "sk_live_secretsecret" not in response.text
    body = response.json()
    assert "auth" not in body["parameters"] and "url" not in body["parameters"]
    warnings = json.loads(body["info"])["warnings"]
    assert any("auth, url" in w for w in warnings) and any("s_churn" in w for w in warnings)
    assert any("CLIP_stop_at_last_layers" in w for w in warnings) and not any("sd_vae" in w for w in warnings)
    assert any("<lora" in w for w in warnings)
    assert client.post("/sdapi/v1/txt2img", json={**BODY, "send_images": False}, headers=auth).json()["images"] == []


def test_idempotency_and_credits_as_on_api_v1(client, engine, user_and_key, auth):
    set_plan(engine, user_and_key[0])
    set_workspace(engine, user_and_key[0], credits=10)
    body = {**BODY, "batch_size": 3}
    first = client.post("/sdapi/v1/txt2img", json=body, headers=auth | {"Idempotency-Key": "a1111-retry-1"})
    again = client.post("/sdapi/v1/txt2img", json=body, headers=auth | {"Idempotency-Key": "a1111-retry-1"})
    assert first.status_code == again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["images"] == first.json()["images"] and len(first.json()["images"]) == 3
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["usage"]["today"]["requestCount"] == 3 and usage["credits"]["balance"] == 7  # charged once
    other = client.post("/sdapi/v1/txt2img", json={**body, "seed": 1}, headers=auth | {"Idempotency-Key": "a1111-retry-1"})
    assert a1111_error(other, 409)["code"] == "conflict"


def test_cors_preflight_covers_sdapi(client):
    preflight = client.options("/sdapi/v1/txt2img", headers={
        "Origin": "https://app.example.org", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"


def test_basic_credentials_are_not_taken_from_another_sites_page(client, user_and_key):
    token = base64.b64encode(f"x:{user_and_key[1]}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    assert client.get("/sdapi/v1/options", headers=headers).status_code == 200
    replayed = client.post("/sdapi/v1/interrupt", headers=headers | {"Sec-Fetch-Site": "cross-site"})
    assert a1111_error(replayed, 401)["code"] == "unauthorized"
