"""The OpenAI Images dialect: the official `openai` SDK pointed at a running server, and OpenAI's error shapes."""

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.api.helpers import set_plan, set_workspace
from tests.server_process import Server, create_key, server_env


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    data_dir = tmp_path_factory.mktemp("openai") / "data"
    env = server_env(data_dir, models_dir)
    keys = {plan: create_key(env, f"{plan}@example.com", plan=plan) for plan in ("pro", "free")}
    running = Server(env, data_dir.parent / "server.log").start()
    yield running, keys
    running.stop()


def sdk(server, plan="pro") -> openai.OpenAI:
    running, keys = server
    return openai.OpenAI(base_url=f"{running.base}/v1", api_key=keys[plan], max_retries=0, timeout=120)


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_the_sdk_generates_b64_json(server):
    result = sdk(server).images.generate(model="tiny-sd", prompt="a red fox in fresh snow", n=2, size="256x256",
                                         response_format="b64_json")
    assert len(result.data) == 2 and result.created > 0
    images = [base64.b64decode(item.b64_json) for item in result.data]
    assert all(image.startswith(b"\x89PNG") and png_size(image) == (256, 256) for image in images)
    assert images[0] != images[1]  # each its own seed
    assert result.data[0].revised_prompt == "a red fox in fresh snow"


def test_the_sdk_generates_urls_stored_and_not(server):
    for plan in ("pro", "free"):  # Pro stores images (a gallery link), Free does not (the job's copy)
        result = sdk(server, plan).images.generate(model="tiny-sd", prompt="a lighthouse", size="256x256",
                                                   response_format="url")
        url = result.data[0].url
        assert url.startswith(server[0].base) and ("/api/v1/images/" in url) == (plan == "pro")
        fetched = httpx.get(url, timeout=30)  # signed: no key needed
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"


def test_output_format_and_quality(server):
    result = sdk(server).images.generate(model="tiny-sd", prompt="a mug", size="256x256", quality="high",
                                         response_format="b64_json", extra_body={"output_format": "jpeg"})
    assert base64.b64decode(result.data[0].b64_json)[:3] == b"\xff\xd8\xff"  # a JPEG
    url = sdk(server).images.generate(model="tiny-sd", prompt="a mug", size="256x256",
                                      extra_body={"output_format": "webp"}).data[0].url
    assert httpx.get(url, timeout=30).headers["content-type"] == "image/webp"


def test_openai_model_names_run_the_default_model(server):
    result = sdk(server).images.generate(model="dall-e-3", prompt="a boat", size="256x256",
                                         response_format="b64_json")
    assert png_size(base64.b64decode(result.data[0].b64_json)) == (256, 256)
    ids = {model.id for model in sdk(server).models.list()}
    assert {"tiny-sd", "tiny-sdxl", "dall-e-3", "gpt-image-1"} <= ids


def test_errors_come_in_openai_shape_through_the_sdk(server):
    running, _ = server
    bad_key = openai.OpenAI(base_url=f"{running.base}/v1", api_key="sk_live_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad_key.images.generate(prompt="x")
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).images.generate(model="no-such-model", prompt="x", size="256x256")
    assert caught.value.body["param"] == "model" and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).images.generate(model="tiny-sd", prompt="x", size="huge")
    assert caught.value.body["param"] == "size"


# -- error shapes in process: 401, 402, 429, 400 ---------------------------------------------------------------

def openai_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and response.headers["x-request-id"]
    return error


def test_401_402_429_in_openai_shape(client, engine, user_and_key, auth):
    body = {"model": "tiny-sd", "prompt": "x", "size": "256x256"}
    error = openai_error(client.post("/v1/images/generations", json=body), 401)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    set_plan(engine, user_and_key[0], requests_per_day=1)  # not per minute: a minute may turn mid-test
    set_workspace(engine, user_and_key[0], credits=0)
    error = openai_error(client.post("/v1/images/generations", json=body, headers=auth), 402)
    assert error["type"] == error["code"] == "insufficient_quota"
    set_workspace(engine, user_and_key[0], credits=100)
    assert client.post("/v1/images/generations", json=body, headers=auth).status_code == 200
    limited = client.post("/v1/images/generations", json=body, headers=auth)
    error = openai_error(limited, 429)
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert int(limited.headers["retry-after"]) >= 1


def test_bad_arguments_are_400s_naming_the_parameter(client, engine, user_and_key, auth):
    set_plan(engine, user_and_key[0])
    for body, param in (({"prompt": "x", "n": 11}, "n"), ({"prompt": "x", "nonsense": 1}, "nonsense"),
                        ({"prompt": ""}, "prompt"), ({"prompt": "x", "response_format": "gif"}, "response_format"),
                        ({"prompt": "x", "background": "transparent"}, "background")):
        error = openai_error(client.post("/v1/images/generations", json=body, headers=auth), 400)
        assert error["param"] == param and error["type"] == "invalid_request_error"
    assert openai_error(client.get("/v1/nope", headers=auth), 404)["code"] == "not_found"


def test_n_images_count_as_n_requests_and_credits(client, engine, user_and_key, auth):
    set_plan(engine, user_and_key[0])
    set_workspace(engine, user_and_key[0], credits=10)
    response = client.post("/v1/images/generations", headers=auth, json={
        "model": "tiny-sd", "prompt": "three", "n": 3, "size": "256x256", "response_format": "b64_json"})
    assert response.status_code == 200 and len(response.json()["data"]) == 3
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]
    assert usage["usage"]["today"]["requestCount"] == 3 and usage["credits"]["balance"] == 7


# -- edits and variations ---------------------------------------------------------------------------------------

def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def half_mask(size=(256, 256)) -> bytes:
    """OpenAI's mask convention: the transparent right half is what gets repainted."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (size[0] // 2, 0, size[0], size[1]))
    return png_bytes(mask)


SOURCE = png_bytes(Image.effect_noise((256, 256), 60).convert("RGB"))


def test_the_sdk_inpaints_with_a_mask_in_both_formats(server):
    client = sdk(server)
    inline = client.images.edit(model="tiny-sd", image=("room.png", SOURCE, "image/png"), prompt="a blue door",
                                mask=("mask.png", half_mask(), "image/png"), response_format="b64_json")
    edited = Image.open(io.BytesIO(base64.b64decode(inline.data[0].b64_json)))
    assert edited.size == (256, 256) and inline.data[0].revised_prompt == "a blue door"
    assert edited.text["kind"] == "edit"
    linked = client.images.edit(model="tiny-sdxl", image=("room.png", SOURCE, "image/png"), prompt="a red door",
                                mask=("mask.png", half_mask(), "image/png"), n=2, response_format="url")
    assert len(linked.data) == 2
    for item in linked.data:
        fetched = httpx.get(item.url, timeout=30)
        assert fetched.status_code == 200 and png_size(fetched.content) == (256, 256)


def test_the_sdk_edits_without_a_mask_and_makes_variations(server):
    client = sdk(server)
    edit = client.images.edit(model="tiny-sd", image=("room.png", SOURCE, "image/png"), prompt="at night",
                              size="256x256", response_format="b64_json")
    assert png_size(base64.b64decode(edit.data[0].b64_json)) == (256, 256)
    made = client.images.generate(model="tiny-sd", prompt="a lighthouse at dusk", size="256x256",
                                  response_format="b64_json")
    variations = client.images.create_variation(model="tiny-sd", n=2, response_format="b64_json",
                                                image=("made.png", base64.b64decode(made.data[0].b64_json)))
    assert len(variations.data) == 2
    assert variations.data[0].revised_prompt == "a lighthouse at dusk"  # the prompt recorded in the image
    images = [Image.open(io.BytesIO(base64.b64decode(item.b64_json))) for item in variations.data]
    assert images[0].text["kind"] == "variation" and images[0].tobytes() != images[1].tobytes()


def test_edit_errors_are_openai_400s(client, engine, user_and_key, auth):
    set_plan(engine, user_and_key[0])

    def edit(files, **fields):
        return client.post("/v1/images/edits", headers=auth, files=files,
                           data={"prompt": "x", "model": "tiny-sd", **fields})

    assert openai_error(edit({}), 400)["param"] == "image"
    opaque_mask = png_bytes(Image.new("L", (256, 256), 255))
    error = openai_error(edit({"image": SOURCE, "mask": opaque_mask}), 400)
    assert error["param"] == "mask" and "alpha" in error["message"]
    error = openai_error(edit({"image": SOURCE, "mask": half_mask((128, 128))}), 400)
    assert error["param"] == "mask" and "same size" in error["message"]
    assert openai_error(edit({"image": SOURCE}, nonsense="1"), 400)["param"] == "nonsense"
    assert openai_error(edit({"image": SOURCE}, n="99"), 400)["param"] == "n"
    assert openai_error(edit({"image": b"not an image"}), 400)["param"] == "image"
    two = [("image[]", ("a.png", SOURCE)), ("image[]", ("b.png", SOURCE))]
    error = openai_error(client.post("/v1/images/edits", headers=auth, files=two, data={"prompt": "x",
                                                                                       "model": "tiny-sd"}), 400)
    assert error["param"] == "image" and "one image" in error["message"]
    assert openai_error(client.post("/v1/images/edits", json={"prompt": "x"}), 401)["code"] == "invalid_api_key"


def test_an_edit_with_transparency_and_no_mask_inpaints_the_transparent_part(client, engine, user_and_key, auth):
    """dall-e-2's convention: without a mask, the image's own transparent pixels are what to edit."""
    set_plan(engine, user_and_key[0])
    source = Image.effect_noise((256, 256), 60).convert("RGBA")
    source.paste((0, 0, 0, 0), (128, 0, 256, 256))
    response = client.post("/v1/images/edits", headers=auth, files={"image": png_bytes(source)},
                           data={"prompt": "a window", "model": "tiny-sd", "response_format": "b64_json",
                                 "size": "256x256"})
    assert response.status_code == 200, response.text
    assert png_size(base64.b64decode(response.json()["data"][0]["b64_json"])) == (256, 256)


def test_an_edit_retried_with_the_same_idempotency_key_runs_once(client, engine, user_and_key, auth):
    set_plan(engine, user_and_key[0])
    set_workspace(engine, user_and_key[0], credits=10)
    headers = {**auth, "Idempotency-Key": "edit-once"}
    answers = [client.post("/v1/images/edits", headers=headers, files={"image": SOURCE},  # a new boundary each time
                           data={"prompt": "a door", "model": "tiny-sd", "response_format": "b64_json"})
               for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200] and answers[1].headers["idempotent-replayed"] == "true"
    assert answers[0].json()["data"] == answers[1].json()["data"]
    assert client.get("/api/v1/usage", headers=auth).json()["data"]["credits"]["balance"] == 9
