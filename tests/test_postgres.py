"""The metered request path on PostgreSQL (psycopg 3): the SQL the engine writes itself is portable.

Needs a PostgreSQL server whose URL is in IMAGESTUDIO_TEST_POSTGRES_URL (a superuser: each test makes a fresh
database). .ci/run starts a throwaway cluster; elsewhere the tests are skipped, and in CI they fail without it.
"""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine.service import ImageEngine
from tests.api.helpers import SMALL, set_plan, set_workspace
from tests.conftest import make_user
from tests.support import fresh_postgres_url

pytestmark = pytest.mark.sqlite_pass_only  # it picks its databases itself: once is enough

@pytest.fixture
def pg_settings(settings) -> Iterator:
    with fresh_postgres_url() as url:
        yield settings.model_copy(update={"database_url": url})


@pytest.fixture
def pg(pg_settings):
    engine = ImageEngine(pg_settings)
    engine.start()
    with TestClient(create_app(engine=engine, with_studio=False)) as client:
        yield engine, client
    engine.stop()
    engine.db.dispose()


def test_metered_generation_with_64_bit_seeds(pg):
    engine, client = pg
    user, key = make_user(engine, "pg@example.com", plan="pro")
    headers = {"Authorization": f"Bearer {key}"}
    for seed in (0, 2**31, 2**32 - 1):
        response = client.post("/api/v1/generate", json={"prompt": "a fox", "seed": seed, **SMALL}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["seed"] == seed
    assert client.get("/api/v1/images", params={"q": "fox"}, headers=headers).json()["data"]["total"] == 3
    usage = client.get("/api/v1/usage", headers=headers).json()["data"]
    assert usage["usage"]["today"] == {"requestCount": 3, "imageCount": 3, "creditsUsed": 3}
    assert usage["credits"]["balance"] == 10000 - 3  # the monthly grant, then three images


def test_limits_batches_and_prompt_tools(pg):
    engine, client = pg
    user, key = make_user(engine, "limits@example.com")
    headers = {"Authorization": f"Bearer {key}"}
    set_plan(engine, user, requests_per_minute=2)
    set_workspace(engine, user, credits=10)
    batch = client.post("/api/v1/generate", json={"items": [{"prompt": f"p{i}"} for i in range(3)], **SMALL},
                        headers=headers)
    assert [item["success"] for item in batch.json()["data"]["results"]] == [True, True, False]
    refused = client.post("/api/v1/generate", json={"prompt": "x", **SMALL}, headers=headers)
    assert refused.status_code == 429 and refused.json()["retry_after"] >= 1
    assert client.post("/api/v1/prompt/enhance", json={"prompt": "x", "tone": "anime, cozy"},
                       headers=headers).status_code == 200
    assert client.get("/api/v1/usage", headers=headers).json()["data"]["credits"]["balance"] == 8


def test_nul_characters_are_refused_before_the_database(pg):
    engine, client = pg
    _, key = make_user(engine, "nul@example.com")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/api/v1/generate", json={"prompt": "a\u0000b"}, headers=headers).status_code == 422
    assert client.get("/api/v1/images", params={"q": "a\x00"}, headers=headers).status_code == 422
