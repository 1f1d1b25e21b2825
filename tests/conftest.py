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
from engine.accounts import create_api_key, create_user  # noqa: E402
from engine.background import build_tiny_rembg_model  # noqa: E402
from engine.config import Settings  # noqa: E402
from engine.db import session_scope  # noqa: E402
from engine.service import ImageEngine  # noqa: E402
from engine.tiny_models import TINY_MODEL_SLUGS, ensure_tiny_model  # noqa: E402

torch.set_num_threads(2)


def require(available: bool, what: str) -> None:
    """A test that needs a tool or service: skipped where it is missing, but a failure in CI (CI=true), where
    .ci/run installs everything and a silent skip would hide a broken install."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must provide {what}")
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """Tiny models are built once per test run and shared (read-only) by every test."""
    folder = tmp_path_factory.mktemp("models")
    for slug in TINY_MODEL_SLUGS:
        ensure_tiny_model(slug, folder)
    build_tiny_rembg_model(folder / "rembg" / "u2net.onnx")  # stands in for the real u2net.onnx
    return folder


@pytest.fixture
def settings(tmp_path, models_dir) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", models_path=models_dir, default_model="tiny-sd",
                    device="cpu", studio_enabled=False, allow_downloads=False, secret_key="test-secret")


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
