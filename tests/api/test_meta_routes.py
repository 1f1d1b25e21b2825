def test_models_need_no_auth_and_say_what_runs_here(client):
    response = client.get("/api/v1/models")
    assert response.status_code == 200
    models = {m["slug"]: m for m in response.json()["data"]}
    assert models["tiny-sd"]["available"] and models["tiny-sd"]["status"] == "ready"
    assert not models["lucid-origin"]["available"] and "no open weights" in models["lucid-origin"]["reason"]
    assert models["flux-schnell"]["status"] == "unavailable"  # offline and not pulled
    for model in models.values():
        assert {"slug", "name", "description", "available"} <= model.keys()
    assert client.get("/api/v1/models/tiny-flux").json()["data"]["family"] == "flux"
    missing = client.get("/api/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["request_id"]


def test_health_reports_components(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "healthy"
    assert set(data["checks"]) == {"database", "storage", "device", "worker"}
    assert data["checks"]["device"]["device"] == "cpu"


def test_health_degrades_when_a_component_fails(client, engine):
    engine.worker.stop()
    response = client.get("/api/v1/health")
    assert response.status_code == 503 and response.json()["data"]["status"] == "degraded"
    assert response.json()["data"]["checks"]["worker"]["status"] == "error"


def test_every_response_has_a_request_id(client):
    for method, path in (("get", "/api/v1/health"), ("get", "/api/v1/nope"), ("delete", "/api/v1/models"),
                         ("post", "/api/v1/generate")):
        response = getattr(client, method)(path)
        assert response.headers["x-request-id"].startswith("req_")
        assert response.json()["request_id"] == response.headers["x-request-id"]
    assert client.delete("/api/v1/models").status_code == 405
    assert client.get("/api/v1/nope").json()["error"]["code"] == "not_found"


def test_a_sane_incoming_request_id_is_kept(client):
    response = client.get("/api/v1/health", headers={"X-Request-ID": "trace-1234567"})
    assert response.headers["x-request-id"] == "trace-1234567"
    response = client.get("/api/v1/health", headers={"X-Request-ID": "bad id\n"})
    assert response.headers["x-request-id"].startswith("req_")


def test_oversized_body_is_413(client, auth):
    response = client.post("/api/v1/generate", content=b"x" * (17 * 1024 * 1024),
                           headers=auth | {"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_unhandled_errors_become_a_500_envelope(client, auth, engine, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(engine, "submit_generation", boom)
    response = client.post("/api/v1/generate", json={"prompt": "x"}, headers=auth)
    assert response.status_code == 500
    payload = response.json()
    assert payload["error"]["code"] == "internal_error" and "kaboom" not in payload["error"]["message"]
    assert payload["request_id"] == response.headers["x-request-id"]


def test_openapi_is_served(client):
    spec = client.get("/openapi.json").json()
    assert "/api/v1/generate" in spec["paths"] and "/api/v1/models" in spec["paths"]
    assert client.get("/docs").status_code == 200
