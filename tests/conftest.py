import os

# Tests never touch the network: the hub is offline before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from api.app import create_app  # noqa: E402
from engine.accounts.users import create_api_key, create_user  # noqa: E402
from engine.config import Settings  # noqa: E402
from engine.data.db import session_scope  # noqa: E402
from engine.generation.tiny_models import TINY_MODEL_SLUGS, ensure_tiny_model  # noqa: E402
from engine.service import ImageEngine  # noqa: E402
from engine.tools.background import build_tiny_rembg_model  # noqa: E402
from tests.support import fresh_postgres_url  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """Tiny models are built once per test run and shared (read-only) by every test."""
    folder = tmp_path_factory.mktemp("models")
    for slug in TINY_MODEL_SLUGS:
        ensure_tiny_model(slug, folder)
    build_tiny_rembg_model(folder / "rembg" / "u2net.onnx")  # stands in for the real u2net.onnx
    return folder


@pytest.fixture
def settings(tmp_path, models_dir) -> Iterator[Settings]:
    """A fresh data dir and database: SQLite there, or with IMAGESTUDIO_TEST_DATABASE=postgresql a new database
    on the PostgreSQL server of IMAGESTUDIO_TEST_POSTGRES_URL (.ci/run runs the suite both ways)."""
    # Every core for torch: the suite is one process whose test thread waits on the pipeline, so the core the
    # default leaves for the API (engine/generation/device.py cpu_threads) would only slow it down.
    base = Settings(_env_file=None, data_dir=tmp_path / "data", models_path=models_dir, default_model="tiny-sd",
                    device="cpu", studio_enabled=False, allow_downloads=False, secret_key="test-secret",
                    cpu_threads=os.cpu_count() or 1)
    if os.environ.get("IMAGESTUDIO_TEST_DATABASE") != "postgresql":
        yield base
        return
    with fresh_postgres_url() as url:
        yield base.model_copy(update={"database_url": url})


@pytest.fixture
def engine(settings) -> Iterator[ImageEngine]:
    eng = ImageEngine(settings)
    eng.start()
    yield eng
    eng.stop()


@pytest.fixture
def client(engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine, with_studio=False)) as test_client:
        yield test_client


def make_user(engine: ImageEngine, email: str, *, is_admin: bool = False, plan: str = "free"):
    with session_scope(engine.db) as session:
        user = create_user(session, email, is_admin=is_admin, plan_slug=plan)
        _, full_key = create_api_key(session, user, "test")
    return user, full_key


@pytest.fixture
def user_and_key(engine):
    return make_user(engine, "alice@example.com", plan="free")


@pytest.fixture
def auth(user_and_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_and_key[1]}"}


@pytest.fixture
def pro_auth(engine) -> dict[str, str]:
    """A Pro-plan user: storage on, bigger limits."""
    return {"Authorization": f"Bearer {make_user(engine, 'pat@example.com', plan='pro')[1]}"}


def pytest_collection_modifyitems(config, items):
    """The PostgreSQL pass (.ci/run's second) runs what opens the pass's database: the tests that use the
    ``settings`` fixture, where IMAGESTUDIO_TEST_DATABASE picks it. Any other test would run exactly as it did in
    the SQLite pass (a subprocess server keeps its own SQLite file), and only cost CI time."""
    if os.environ.get("IMAGESTUDIO_TEST_DATABASE") != "postgresql":
        return
    kept, deselected = [], []
    for item in items:
        (kept if "settings" in getattr(item, "fixturenames", ()) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
