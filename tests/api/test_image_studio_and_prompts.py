import base64
import io

import httpx
import pytest
from PIL import Image

from engine.generation.params import read_png_metadata
from engine.tools.background import BackgroundRemover
from tests.api.helpers import set_plan, set_workspace


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def red_square() -> Image.Image:
    image = Image.new("RGB", (200, 160), "white")
    image.paste((220, 20, 20), (60, 40, 140, 120))
    return image


def decode(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def studio(client, headers, **body):
    return client.post("/api/v1/image-studio", json=body, headers=headers)


def test_generate_is_the_default_action_with_aspect_ratios(client, auth):
    # The tiny model's native size is 256 px, also its minimum: the short side stays 256.
    for ratio, expected in (("1:1", (256, 256)), ("16:9", (456, 256)), ("9:16", (256, 456)),
                            ("21:9", (600, 256))):
        response = studio(client, auth, prompt="a harbor at dawn", model="tiny-sd", aspect_ratio=ratio)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["action"] == "generate" and (data["width"], data["height"]) == expected
        assert decode(data["image_url"]).size == expected
    assert studio(client, auth, prompt="x", aspect_ratio="5:4").status_code == 422


def test_long_prompts_up_to_ten_thousand_characters(client, auth):
    assert studio(client, auth, prompt="a cat " * 1600, model="tiny-sd").status_code == 200
    too_long = studio(client, auth, prompt="x" * 10_001)
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "prompt"


def test_enhance_prompt_action_is_free(client, auth):
    response = studio(client, auth, action="enhance_prompt", prompt="a lighthouse", tone="cinematic")
    data = response.json()["data"]
    assert response.status_code == 200 and data["action"] == "enhance_prompt"
    assert data["prompt"].startswith("a lighthouse") and len(data["prompt"]) > len("a lighthouse") + 20
    assert data["credits_used"] == 0 and data["source"] == "builtin"
    assert client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]["creditsUsed"] == 0


@pytest.mark.parametrize("prompt", ["remove the background", "please clear bg", "make a transparent background",
                                    "cut out the product", "Remove BG"])
def test_input_image_with_a_removal_intent_goes_to_background_removal(client, auth, prompt):
    response = studio(client, auth, prompt=prompt, input_image=png_data_url(red_square()))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["action"] == "remove_background" and data["credits_used"] == 2
    result = decode(data["image_url"])
    assert result.mode == "RGBA" and result.size == (200, 160)
    alpha = result.getchannel("A")
    assert alpha.getpixel((100, 80)) > 200 and alpha.getpixel((5, 5)) < 60  # subject kept, background gone


def test_explicit_remove_background_without_a_prompt(client, auth):
    raw_base64 = png_data_url(red_square()).split(",", 1)[1]
    response = studio(client, auth, action="remove_background", input_image=raw_base64)
    assert response.status_code == 200 and response.json()["data"]["action"] == "remove_background"


def test_input_image_with_another_intent_is_edited(client, auth):
    response = studio(client, auth, prompt="turn it into a watercolor", model="tiny-sd",
                      input_image=png_data_url(red_square()), seed=3, strength=0.5)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["action"] == "edit" and data["credits_used"] == 1
    edited = decode(data["image_url"])
    assert edited.mode == "RGB" and edited.size == (data["width"], data["height"])
    assert data["width"] > data["height"]  # the input's landscape shape is kept
    assert read_png_metadata(base64.b64decode(data["image_url"].split(",")[1]))["kind"] == "edit"


def test_edit_with_flux(client, auth):
    response = studio(client, auth, action="edit", prompt="snowy", model="tiny-flux",
                      input_image=png_data_url(red_square()), aspect_ratio="1:1")
    assert response.status_code == 200, response.text
    assert (response.json()["data"]["width"], response.json()["data"]["height"]) == (256, 256)


def test_missing_background_model_is_a_clear_503_and_free(client, auth, user_and_key, engine, tmp_path):
    set_plan(engine, user_and_key[0])
    set_workspace(engine, user_and_key[0], credits=10)
    engine._background_remover = BackgroundRemover(tmp_path / "no-models")
    response = studio(client, auth, prompt="remove background", input_image=png_data_url(red_square()))
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert "background removal is not set up" in message and "u2net" in message and response.json()["request_id"]
    assert str(tmp_path) not in message  # the server's paths are for its log, not for callers
    assert client.get("/api/v1/usage", headers=auth).json()["data"]["credits"]["balance"] == 10


@pytest.mark.parametrize("value,status", [
    ("not base64 at all!!", 400),
    ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", 415),
    ("file:///etc/passwd", 400),
    ("http://127.0.0.1:1/x.png", 400),
    ("http://169.254.169.254/latest/meta-data", 400),
])
def test_bad_input_images(client, auth, value, status):
    response = studio(client, auth, prompt="edit it", input_image=value)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == "input_image" and response.json()["request_id"]


def test_edit_requires_an_input_image(client, auth):
    response = studio(client, auth, action="edit", prompt="x")
    assert response.status_code == 422 and response.json()["error"]["field"] == "input_image"


def test_prompt_enhance_and_build(client, auth):
    enhanced = client.post("/api/v1/prompt/enhance", json={"prompt": "portrait of an old sailor"}, headers=auth)
    assert enhanced.status_code == 200
    data = enhanced.json()["data"]
    assert data["prompt"].startswith("portrait of an old sailor") and data["tone"] == "photographic"
    free_tone = client.post("/api/v1/prompt/enhance", json={"prompt": "x", "tone": "anime, cozy"}, headers=auth)
    assert free_tone.status_code == 200 and free_tone.json()["data"]["tone"] == "anime, cozy"
    assert "anime" in free_tone.json()["data"]["prompt"] and "cozy" in free_tone.json()["data"]["prompt"]
    bad_tone = client.post("/api/v1/prompt/enhance", json={"prompt": "x", "tone": "t" * 101}, headers=auth)
    assert bad_tone.status_code == 422 and bad_tone.json()["error"]["field"] == "tone"
    built = client.post("/api/v1/prompt/build", json={"subject": "a red fox", "setting": "a snowy forest",
                                                      "lighting": "golden hour", "camera": "85mm lens"},
                        headers=auth)
    prompt = built.json()["data"]["prompt"]
    assert built.status_code == 200 and "a red fox" in prompt and "snowy forest" in prompt and "85mm" in prompt
    empty = client.post("/api/v1/prompt/build", json={}, headers=auth)
    assert empty.status_code == 400 and "at least one" in empty.json()["error"]["message"]
    both = client.post("/api/v1/prompt/build", json={"subject": "a mug", "enhance": True, "tone": "minimal"},
                       headers=auth)
    assert both.json()["data"]["enhanced"] is True and both.json()["data"]["built"] == "a mug"
    assert client.post("/api/v1/prompt/enhance", json={"prompt": "x"}).status_code == 401


def test_admin_chosen_text_model_is_used(client, auth, engine):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"content": "A weathered sailor, dramatic light"}}]})

    engine.text_model_http = httpx.Client(transport=httpx.MockTransport(handler))
    engine.runtime.set("text_model", {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "tiny"})
    data = client.post("/api/v1/prompt/enhance", json={"prompt": "a sailor"}, headers=auth).json()["data"]
    assert data["source"] == "openai" and data["prompt"] == "A weathered sailor, dramatic light"
