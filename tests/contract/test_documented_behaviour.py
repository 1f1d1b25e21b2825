"""Where the server used to differ from the seed documents (issue 10's two tables), one test per row."""

import pytest

from engine.generation.params import GenerationParams
from engine.generation.pipelines import WeightsState
from tests.api.helpers import set_plan, set_workspace

SMALL = {"width": 256, "height": 256}


# -- num_inference_steps -------------------------------------------------------------------------

def test_num_inference_steps_in_generate_items_and_image_studio(client, contract_engine, auth):
    single = client.post("/api/v1/generate", json={"prompt": "x", "num_inference_steps": 3, **SMALL}, headers=auth)
    assert single.status_code == 200, single.text
    assert single.json()["data"]["num_inference_steps"] == single.json()["data"]["steps"] == 3
    batch = client.post("/api/v1/generate", json={"num_inference_steps": 1, **SMALL, "items": [
        {"prompt": "a"}, {"prompt": "b", "num_inference_steps": 2}]}, headers=auth).json()["data"]["results"]
    assert [item["num_inference_steps"] for item in batch] == [1, 2]
    studio = client.post("/api/v1/image-studio", json={"prompt": "x", "model": "tiny-sd", "num_inference_steps": 3},
                         headers=auth)
    assert studio.status_code == 200 and studio.json()["data"]["num_inference_steps"] == 3


def test_steps_stays_an_alias_and_a_conflict_names_both(client, contract_engine, auth):
    alias = client.post("/api/v1/generate", json={"prompt": "x", "steps": 3, **SMALL}, headers=auth)
    assert alias.json()["data"]["num_inference_steps"] == 3
    same = client.post("/api/v1/generate", json={"prompt": "x", "steps": 3, "num_inference_steps": 3, **SMALL},
                       headers=auth)
    assert same.status_code == 200
    for path in ("/api/v1/generate", "/api/v1/image-studio"):
        conflict = client.post(path, json={"prompt": "x", "steps": 3, "num_inference_steps": 4}, headers=auth)
        assert conflict.status_code == 422 and conflict.json()["request_id"]
        message = conflict.json()["error"]["message"]
        assert "num_inference_steps (4)" in message and "steps (3)" in message
    out_of_range = client.post("/api/v1/generate", json={"prompt": "x", "num_inference_steps": 51}, headers=auth)
    assert out_of_range.status_code == 422 and out_of_range.json()["error"]["field"] == "num_inference_steps"
    in_batch = client.post("/api/v1/generate", json={"items": [{"prompt": "x", "steps": 1, "num_inference_steps": 2}]},
                           headers=auth).json()["data"]["results"][0]
    assert in_batch["success"] is False and in_batch["error_code"] == "validation_error"


# -- batches -------------------------------------------------------------------------------------

def test_batch_items_in_the_flat_shape_with_a_string_error(client, contract_engine, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_minute=2)
    body = {"items": [{"prompt": f"item {i}", **SMALL} for i in range(3)]}
    response = client.post("/api/v1/generate", json=body, headers=auth)
    assert response.status_code == 200, response.text  # part of it could run: a 200 with a failed item
    first, second, third = response.json()["data"]["results"]
    for item in (first, second):
        assert item["success"] is True and item["image"].startswith("data:image/png;base64,")
        assert isinstance(item["seed"], int) and item["model"] == "tiny-sd" and "plan" in item["storage"]
    assert third == {"index": 2, "success": False, "error": "Rate limit exceeded", "error_code": "rate_limited",
                     "error_details": third["error_details"]}
    assert third["error_details"]["limit"] == "minute" and third["error_details"]["retry_after"] >= 1
    assert response.json()["data"]["succeeded"] == 2
    usage = client.get("/api/v1/usage", headers=auth).json()["data"]["usage"]["today"]
    assert usage == {"requestCount": 2, "imageCount": 2, "creditsUsed": 2}


def test_a_batch_of_which_nothing_can_run_is_a_429(client, contract_engine, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_minute=1)
    assert client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=auth).status_code == 200
    response = client.post("/api/v1/generate", json={"items": [{"prompt": "a", **SMALL}]}, headers=auth)
    assert response.status_code == 429 and response.headers["Retry-After"] and response.json()["retry_after"] >= 1


def test_batch_items_past_the_credit_balance_fail_with_the_credit_message(client, contract_engine, auth,
                                                                         user_and_key, engine):
    set_plan(engine, user_and_key[0], monthly_credits=0)
    set_workspace(engine, user_and_key[0], credits=1)
    body = {"items": [{"prompt": "a", **SMALL}, {"prompt": "b", **SMALL}]}
    response = client.post("/api/v1/generate", json=body, headers=auth)
    assert response.status_code == 200
    ran, refused = response.json()["data"]["results"]
    assert ran["success"] and not refused["success"] and refused["error_code"] == "insufficient_credits"
    assert refused["error"] == "this item costs 1 credit and the balance left for it is 0"
    assert client.get("/api/v1/usage", headers=auth).json()["data"]["credits"]["balance"] == 0
    nothing = client.post("/api/v1/generate", json=body, headers=auth)
    assert nothing.status_code == 402 and nothing.json()["error"]["code"] == "insufficient_credits"


# -- usage ---------------------------------------------------------------------------------------

def test_usage_in_the_documented_shape(client, contract_engine, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_day=50, requests_per_month=1500)
    client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=auth)
    payload = client.get("/api/v1/usage", headers=auth).json()
    assert set(payload) == {"success", "data", "request_id"}
    usage, plan = payload["data"]["usage"], payload["data"]["plan"]
    assert usage["today"]["requestCount"] == usage["today"]["imageCount"] == 1
    assert usage["this_month"]["requestCount"] == usage["this_month"]["imageCount"] == 1
    assert (plan["name"], plan["slug"], plan["requests_per_month"], plan["requests_per_day"]) == \
        ("Custom", "custom", 1500, 50)
    assert (plan["remaining_today"], plan["remaining_month"]) == (49, 1499)


# -- tone, model aliases -------------------------------------------------------------------------

def test_tone_is_free_text(client, contract_engine, auth):
    data = client.post("/api/v1/prompt/enhance", json={"prompt": "robot reading a book", "tone": "anime, cozy"},
                       headers=auth).json()["data"]
    assert data["prompt"].startswith("robot reading a book") and "anime" in data["prompt"]
    assert data["tone"] == "anime, cozy"
    known = client.post("/api/v1/image-studio", json={"action": "enhance_prompt", "prompt": "a dog on a beach",
                                                      "tone": "vintage"}, headers=auth).json()["data"]
    assert "vintage aesthetic" in known["prompt"]


def test_flux_2_pro_runs_through_an_alias_and_names_both_models(client, engine, auth):
    body = {"prompt": "A minimalist Japanese garden at dawn", "model": "flux-2-pro", "aspect_ratio": "16:9"}
    missing = client.post("/api/v1/image-studio", json=body, headers=auth)
    assert missing.status_code == 503 and missing.json()["request_id"]
    assert "imagestudio models alias flux-2-pro" in missing.json()["error"]["message"]
    engine.set_model_alias("flux-2-pro", "tiny-flux")
    data = client.post("/api/v1/image-studio", json=body, headers=auth).json()["data"]
    assert (data["model"], data["requested_model"]) == ("tiny-flux", "flux-2-pro")
    generated = client.post("/api/v1/generate", json={"prompt": "x", "model": "flux-2-pro", **SMALL},
                            headers=auth).json()["data"]
    assert (generated["model"], generated["requested_model"]) == ("tiny-flux", "flux-2-pro")
    listed = {m["slug"]: m for m in client.get("/api/v1/models").json()["data"]}
    assert listed["flux-2-pro"]["alias_of"] == "tiny-flux" and listed["flux-2-pro"]["available"] is True


def test_aliases_are_checked(engine):
    from engine.errors import InvalidRequest, ModelNotFound, NotFound

    with pytest.raises(InvalidRequest):
        engine.set_model_alias("flux-2-pro", "lucid-origin")  # no open weights: it can't run here either
    with pytest.raises(ModelNotFound):
        engine.set_model_alias("flux-2-pro", "no-such-model")
    with pytest.raises(InvalidRequest):
        engine.set_model_alias("bad slug!", "tiny-sd")
    with pytest.raises(NotFound):
        engine.remove_model_alias("flux-2-pro")
    engine.set_model_alias("house-style", "tiny-sdxl")  # a new name works too
    assert engine.prepare(GenerationParams(prompt="x", model="house-style")).model == "tiny-sdxl"


def test_a_ready_stand_in_serves_a_proprietary_slug_by_default(engine, monkeypatch):
    real_state = engine.pipelines.state
    monkeypatch.setattr(engine.pipelines, "state", lambda spec: (WeightsState.READY, None)
                        if spec.slug == "flux-2-klein-9b" else real_state(spec))
    resolved = engine.prepare(GenerationParams(prompt="x", model="flux-2-pro"))
    assert (resolved.model, resolved.requested_model) == ("flux-2-klein-9b", "flux-2-pro")
    assert "flux-2-pro has no open weights; flux-2-klein-9b ran in its place" in resolved.warnings[0]


# -- negative prompts on FLUX --------------------------------------------------------------------

def test_a_negative_prompt_on_flux_uses_true_cfg(client, contract_engine, auth):
    body = {"prompt": "a red fox", "model": "tiny-flux", "seed": 7, **SMALL}
    plain = client.post("/api/v1/generate", json=body, headers=auth).json()["data"]
    negative = client.post("/api/v1/generate", json=body | {"negative_prompt": "blurry"}, headers=auth).json()["data"]
    assert negative["negative_prompt"] == "blurry" and negative["true_cfg_scale"] == 4.0 and negative["warnings"] == []
    assert plain["true_cfg_scale"] is None and negative["image"] != plain["image"]


def test_what_a_model_cannot_use_is_named_in_warnings(client, contract_engine, auth):
    data = client.post("/api/v1/generate", json={"prompt": "x", "model": "tiny-flux", "width": 300, "height": 256,
                                                  "guidance_scale": 3.5}, headers=auth).json()["data"]
    assert "guidance_scale was not used: Tiny FLUX (offline test model) is guidance-distilled" in data["warnings"]
    assert any(w.startswith("width 300 was rounded to 304") for w in data["warnings"]) and data["width"] == 304


# -- prompt tools: free, behind their own guard --------------------------------------------------

def test_prompt_tools_have_a_per_minute_guard_of_their_own(client, contract_engine, auth, engine):
    engine.settings.prompt_tools_per_minute = 2
    for _ in range(2):
        assert client.post("/api/v1/prompt/enhance", json={"prompt": "a dog"}, headers=auth).status_code == 200
    guarded = client.post("/api/v1/image-studio", json={"action": "enhance_prompt", "prompt": "a dog"}, headers=auth)
    assert guarded.status_code == 429 and guarded.json()["error"]["limit"] == "prompt_tools"
    assert guarded.headers["Retry-After"] and guarded.json()["retry_after"] >= 1
    # ... and generation, which the guard does not touch, still runs.
    assert client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=auth).status_code == 200


# -- HEAD and OPTIONS ----------------------------------------------------------------------------

def test_head_mirrors_get_and_options_answers_in_json(client, contract_engine, auth):
    get = client.get("/api/v1/usage", headers=auth)
    head = client.head("/api/v1/usage", headers=auth)
    assert head.status_code == 200 and head.content == b"" and head.headers["x-request-id"]
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    assert client.head("/api/v1/usage").status_code == 401
    assert client.head("/api/v1/nothing-here").status_code == 404
    options = client.options("/api/v1/generate")
    assert options.status_code == 200 and options.json()["data"]["methods"] == ["OPTIONS", "POST"]
    assert options.headers["allow"] == "OPTIONS, POST" and "set-cookie" not in options.headers
    for method in ("OPTIONS", "TRACE", "HEAD"):
        response = client.request(method, "/api/v1/nowhere")
        assert response.status_code == 404 and "set-cookie" not in response.headers
        if method != "HEAD":
            assert response.json()["success"] is False and response.json()["request_id"]
    trace = client.request("TRACE", "/api/v1/generate")
    assert trace.status_code == 405 and trace.json()["error"]["code"] == "method_not_allowed"


def test_a_batch_that_has_request_room_but_no_credits_is_a_402(client, contract_engine, auth, user_and_key, engine):
    set_plan(engine, user_and_key[0], requests_per_minute=1, monthly_credits=0)
    set_workspace(engine, user_and_key[0], credits=0)
    response = client.post("/api/v1/generate", json={"items": [{"prompt": "a", **SMALL}, {"prompt": "b", **SMALL}]},
                           headers=auth)
    assert response.status_code == 402 and response.json()["error"]["code"] == "insufficient_credits"


def test_variants_add_their_negative_prompt_only_where_it_is_plain_conditioning(client, contract_engine, auth):
    for model, negative in (("tiny-sd", True), ("tiny-flux", False)):
        data = client.post("/api/v1/generate/product", json={"prompt": "a mug", "model": model, **SMALL},
                           headers=auth).json()["data"]
        assert (data["negative_prompt"] is not None) is negative, model
        assert data["true_cfg_scale"] is None and data["warnings"] == []
    mine = client.post("/api/v1/generate/logo", json={"prompt": "a fox", "model": "tiny-flux", "negative_prompt": "text",
                                                      **SMALL}, headers=auth).json()["data"]
    assert mine["negative_prompt"] == "text" and mine["true_cfg_scale"] == 4.0  # the caller's own: used


def test_an_aliased_slug_is_listed_with_the_numbers_of_the_model_that_serves_it(client, contract_engine):
    listed = {m["slug"]: m for m in client.get("/api/v1/models").json()["data"]}
    assert listed["flux-2-pro"]["default_steps"] == listed["tiny-flux"]["default_steps"] == 2
    assert listed["flux-2-pro"]["name"] == "FLUX.2 [pro]" and listed["flux-2-pro"]["family"] == "flux"


def test_unknown_fields_are_refused_by_the_prompt_tools(client, contract_engine, auth):
    for path, body in (("/api/v1/prompt/enhance", {"prompt": "x", "tones": "anime"}),
                       ("/api/v1/prompt/build", {"subject": "x", "artstyle": "watercolor"})):
        response = client.post(path, json=body, headers=auth)
        assert response.status_code == 422 and response.json()["request_id"], path


def test_a_misconfigured_alias_in_the_environment_fails_at_start(settings):
    from engine.errors import InvalidRequest, ModelNotFound
    from engine.service import ImageEngine

    for aliases, error in (({"flux-2-pro": "no-such-model"}, ModelNotFound), ({"flux-2-pro": "phoenix-1"},
                                                                               InvalidRequest)):
        with pytest.raises(error):
            ImageEngine(settings.model_copy(update={"model_aliases": aliases}))
