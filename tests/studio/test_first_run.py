"""First run's model step: after the admin account, this machine's recommendation, its pull, Skip."""

import importlib

import pytest

from engine.generation import hardware
from studio.pages import first_run
from tests.hub_stand_in import HubServer
from tests.studio.conftest import ADMIN_EMAIL, PASSWORD

# A UI flow: its database calls (accounts, runtime settings) run on PostgreSQL in the API and CLI tests.
pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_pass_only]

MACHINE = hardware.Machine(accelerator="cpu", gpu_name=None, gpu_memory_bytes=0, cpu_count=4, ram_bytes=16 * 2**30,
                           free_disk_bytes=50 * 10**9)


@pytest.fixture
def fresh_box(user, engine, models_dir, tmp_path, monkeypatch):
    """A box whose default model has no weights; the recommendation is the tiny model as a hub model, served by
    a loopback stand-in for the hub, pulled into this test's own models folder."""
    # The module the app's pages were registered from: NiceGUI's reset drops page modules after each test, so
    # each `user` imports them afresh (this test module's `first_run` may be an earlier copy).
    page = importlib.import_module("studio.pages.first_run")
    spec = engine.catalog.add_custom("hub-sd", "test/tiny-sd", "sd", name="Hub SD")
    engine.runtime.set("default_model", "flux-schnell")
    monkeypatch.setattr(engine.pipelines, "models_dir", tmp_path / "models")
    monkeypatch.setattr(page, "detect", lambda folder: MACHINE)
    monkeypatch.setattr(page, "recommend", lambda machine, catalog: hardware.Recommendation(
        spec, "Hub SD suits this test box."))
    with HubServer({"test/tiny-sd": models_dir / "tiny-sd"}) as hub:
        monkeypatch.setattr(engine.settings, "hub_url", hub.url)
        yield hub


async def create_admin(user) -> None:
    await user.open("/setup")
    user.find(marker="email").type(ADMIN_EMAIL)
    user.find(marker="password").type(PASSWORD)
    user.find(marker="confirm").type(PASSWORD)
    user.find(marker="create-admin").click()
    await user.should_see(marker="pull-model", retries=30)


async def test_after_the_admin_the_recommended_model_is_pulled_and_made_the_default(user, engine, fresh_box,
                                                                                  tmp_path):
    await create_admin(user)
    await user.should_see("no GPU; 4 CPU cores, 17.2 GB of RAM; 50.0 GB free disk")
    await user.should_see("Hub SD suits this test box.")
    user.find(marker="pull-model").click()
    await user.should_see(marker="prompt", retries=100)  # on to Generate once pulled
    assert engine.default_model() == "hub-sd"
    assert (tmp_path / "models" / "hub-sd" / "model_index.json").is_file()
    assert any(s.path == "unet/diffusion_pytorch_model.safetensors" for s in fresh_box.served)


async def test_skip_goes_to_generate_with_the_tiny_models(user, engine, fresh_box):
    await create_admin(user)
    user.find(marker="skip").click()
    await user.should_see(marker="prompt", retries=30)
    assert engine.default_model() == "flux-schnell" and not fresh_box.served


async def test_the_step_is_for_admins_only(user):
    await user.open(first_run.PATH)
    await user.should_see(marker="create-admin", retries=20)  # nobody signed in: sign in (here: first run)
