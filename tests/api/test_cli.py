import io

import pytest
from PIL import Image
from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()


def env_for(settings):
    env = {"IMAGESTUDIO_DATA_DIR": str(settings.data_dir), "IMAGESTUDIO_MODELS_PATH": str(settings.models_dir),
           "IMAGESTUDIO_DEVICE": "cpu"}
    if settings.database_url:  # the PostgreSQL pass: the CLI works on the test's database too
        env["IMAGESTUDIO_DATABASE_URL"] = settings.database_url
    return env


def test_keys_create_list_revoke(settings):
    env = env_for(settings)
    created = runner.invoke(app, ["keys", "create", "--name", "ci"], env=env)
    assert created.exit_code == 0, created.output
    full_key = created.output.strip().splitlines()[-1]
    assert full_key.startswith("sk_live_") and "(admin)" in created.output  # the first owner is an admin
    listed = runner.invoke(app, ["keys", "list"], env=env)
    assert full_key[:16] in listed.output and "active" in listed.output and full_key not in listed.output
    revoked = runner.invoke(app, ["keys", "revoke", full_key[:16]], env=env)
    assert revoked.exit_code == 0 and "Revoked" in revoked.output
    assert "revoked" in runner.invoke(app, ["keys", "list"], env=env).output
    assert runner.invoke(app, ["keys", "revoke", "sk_live_zzzzzzzz"], env=env).exit_code == 1
    second = runner.invoke(app, ["keys", "create", "--email", "bob@example.com"], env=env)
    assert second.exit_code == 0 and "(admin)" not in second.output


def test_the_first_owner_is_on_the_owner_plan_and_later_ones_on_free(settings):
    """The person who runs the box is not rate-limited like a free user on their own machine."""
    from engine.service import ImageEngine

    env = env_for(settings)
    assert runner.invoke(app, ["keys", "create"], env=env).exit_code == 0
    assert runner.invoke(app, ["keys", "create", "--email", "bob@example.com"], env=env).exit_code == 0
    assert runner.invoke(app, ["keys", "create", "--email", "eve@example.com", "--plan", "pro"],
                         env=env).exit_code == 0
    engine = ImageEngine(settings)
    plans = {row.user.email: row.workspace.plan_slug for row in engine.admin.list_accounts()}
    assert plans == {"admin@localhost": "owner", "bob@example.com": "free", "eve@example.com": "pro"}


def test_generate_writes_a_png(settings, tmp_path):
    out = tmp_path / "fox.png"
    result = runner.invoke(app, ["generate", "a fox", "--model", "tiny-flux", "--width", "256", "--height", "256",
                                 "--seed", "3", "--out", str(out)], env=env_for(settings))
    assert result.exit_code == 0, result.output
    with Image.open(io.BytesIO(out.read_bytes())) as image:
        assert image.size == (256, 256) and image.text["seed"] == "3"


def test_models_list_and_pull(settings):
    env = env_for(settings)
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert "tiny-sd" in listed.output and "phoenix-1" in listed.output and "unavailable" in listed.output
    assert runner.invoke(app, ["models", "pull", "tiny-sdxl"], env=env).exit_code == 0
    refused = runner.invoke(app, ["models", "pull", "lucid-origin"], env=env)
    assert refused.exit_code == 1 and "no open weights" in refused.output


def test_db_upgrade_and_current(settings):
    from engine.data.schema import head_revision

    env = env_for(settings)
    assert runner.invoke(app, ["db", "current"], env=env).output.strip() == "no schema yet"
    upgraded = runner.invoke(app, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0 and f"database at revision {head_revision()} (was None)" in upgraded.output
    assert "(no change)" in runner.invoke(app, ["db", "upgrade"], env=env).output
    assert runner.invoke(app, ["db", "current"], env=env).output.strip() == head_revision()


def test_models_alias(settings):
    env = env_for(settings)
    made = runner.invoke(app, ["models", "alias", "flux-2-pro", "tiny-flux"], env=env)
    assert made.exit_code == 0 and "flux-2-pro now runs tiny-flux" in made.output
    listed = runner.invoke(app, ["models", "list"], env=env).output
    assert any(line.startswith("flux-2-pro") and "alias" in line and "runs tiny-flux" in line
               for line in listed.splitlines())
    refused = runner.invoke(app, ["models", "alias", "flux-2-pro", "phoenix-1"], env=env)
    assert refused.exit_code == 1 and "no open weights" in refused.output
    assert runner.invoke(app, ["models", "alias", "flux-2-pro", "--remove"], env=env).exit_code == 0
    assert runner.invoke(app, ["models", "alias", "flux-2-pro", "--remove"], env=env).exit_code == 1


def test_the_wordpress_plugin_zip_is_built(tmp_path):
    import zipfile

    out = tmp_path / "image-studio.zip"
    done = runner.invoke(app, ["wordpress-plugin", "--out", str(out)])
    assert done.exit_code == 0, done.output
    names = zipfile.ZipFile(out).namelist()
    assert "image-studio/image-studio.php" in names and all(name.startswith("image-studio/") for name in names)


def test_users_reset_password_from_the_command_line(settings, engine):
    from engine.accounts.users import authenticate_password
    from engine.data.db import session_scope
    from tests.conftest import make_user

    make_user(engine, "lost@example.com")
    env = env_for(settings)
    typed = runner.invoke(app, ["users", "reset-password", "lost@example.com"], env=env,
                          input="new password 1\nnew password 1\n")
    assert typed.exit_code == 0, typed.output
    with session_scope(engine.db) as session:
        assert authenticate_password(session, "lost@example.com", "new password 1").email == "lost@example.com"
    generated = runner.invoke(app, ["users", "reset-password", "LOST@example.com", "--generate"], env=env)
    password = generated.output.strip().splitlines()[-1].split(": ", 1)[1]
    with session_scope(engine.db) as session:
        assert authenticate_password(session, "lost@example.com", password)
    assert runner.invoke(app, ["users", "reset-password", "nobody@example.com", "--generate"], env=env).exit_code == 1
    short = runner.invoke(app, ["users", "reset-password", "lost@example.com"], env=env, input="short\nshort\n")
    assert short.exit_code == 1 and "8" in short.output


def test_providers_set_route_price_test_and_list(settings):
    from tests.providers.vendors import BflStandIn

    env = env_for(settings)
    bfl = BflStandIn()
    try:
        assert runner.invoke(app, ["providers", "set", "bfl", "--key", bfl.key, "--base-url", bfl.base],
                             env=env).exit_code == 0
        assert runner.invoke(app, ["providers", "route", "flux-2-klein-9b", "bfl"], env=env).exit_code == 0
        assert runner.invoke(app, ["providers", "route", "flux-2-klein-9b", "leonardo"], env=env).exit_code == 2
        assert runner.invoke(app, ["providers", "price", "flux-2-pro", "9", "12"], env=env).exit_code == 0
        tested = runner.invoke(app, ["providers", "test", "bfl"], env=env)
        assert tested.exit_code == 0 and "1234.5 credits left" in tested.output
        listed = runner.invoke(app, ["providers", "list"], env=env).output
        assert "key set" in listed and "flux-2-pro         via BFL API, 9/12 credits" in listed
        assert "flux-2-klein-9b    via BFL API" in listed and bfl.key not in listed
        assert runner.invoke(app, ["providers", "test", "leonardo"], env=env).exit_code == 1  # no key yet
    finally:
        bfl.close()


@pytest.mark.sqlite_pass_only  # the machine and the catalog: no database behaviour
def test_models_recommend_prints_the_machine_the_model_its_size_and_why(settings, monkeypatch):
    from engine.generation import hardware

    machine = hardware.Machine(accelerator="cuda", gpu_name="NVIDIA Test 12GB", gpu_memory_bytes=12 * 10**9,
                               cpu_count=8, ram_bytes=32 * 10**9, free_disk_bytes=200 * 10**9)
    monkeypatch.setattr(hardware, "detect", lambda models_dir: machine)
    result = runner.invoke(app, ["models", "recommend"], env=env_for(settings))
    assert result.exit_code == 0, result.output
    assert "This machine: GPU NVIDIA Test 12GB with 12.0 GB; 200.0 GB free disk" in result.output
    assert "Recommended: sdxl-lightning (SDXL Lightning (4-step)), a 19.3 GB download" in result.output
    assert "Why: " in result.output and "imagestudio models pull sdxl-lightning --default" in result.output


def test_models_pull_shows_progress_and_default_makes_it_the_default(settings, models_dir, tmp_path):
    from engine.service import ImageEngine
    from tests.hub_stand_in import HubServer

    env = env_for(settings) | {"IMAGESTUDIO_MODELS_PATH": str(tmp_path / "models")}
    assert runner.invoke(app, ["models", "add", "hub-sd", "test/tiny-sd", "--family", "sd"], env=env).exit_code == 0
    with HubServer({"test/tiny-sd": models_dir / "tiny-sd"}) as hub:
        pulled = runner.invoke(app, ["models", "pull", "hub-sd", "--default"],
                               env=env | {"IMAGESTUDIO_HUB_URL": hub.url})
    assert pulled.exit_code == 0, pulled.output
    assert "hub-sd is ready in" in pulled.stdout and "now the default model" in pulled.stdout
    assert "[########################] 100% 1." in pulled.stderr and "MB/s" in pulled.stderr
    assert ImageEngine(settings).default_model() == "hub-sd"
    out = tmp_path / "default.png"
    made = runner.invoke(app, ["generate", "a fox", "--width", "256", "--height", "256", "--steps", "1",
                               "--out", str(out)], env=env)
    assert made.exit_code == 0 and " hub-sd " in made.output, made.output
    gone = runner.invoke(app, ["models", "pull", "hub-sd"], env=env | {"IMAGESTUDIO_HUB_URL": hub.url})
    assert gone.exit_code == 1 and "can't be reached (ConnectError)" in gone.stderr  # the stand-in has stopped


@pytest.mark.sqlite_pass_only  # the download's cancel and resume: the database part runs in the test above
def test_ctrl_c_cancels_a_pull_and_the_next_one_resumes(settings, models_dir, tmp_path, monkeypatch):
    import os
    import signal

    import api.cli
    from engine.generation import downloads
    from engine.service import ImageEngine
    from tests.hub_stand_in import HubServer

    unet = "unet/diffusion_pytorch_model.safetensors"
    monkeypatch.setattr(downloads, "PROGRESS_EVERY_S", 0.0)
    real_bar = api.cli._bar

    def bar_then_ctrl_c(event):
        if event.file == unet and event.done > 0 and not pressed:
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: a KeyboardInterrupt in the main thread
            cancels[0].wait(10)  # the download goes on once the command has seen it (not past the file's end)
        return real_bar(event)

    pressed, cancels = [], []
    real_pull = ImageEngine.pull_model
    monkeypatch.setattr(ImageEngine, "pull_model",
                        lambda self, slug, **kw: cancels.append(kw["cancel"]) or real_pull(self, slug, **kw))
    monkeypatch.setattr(api.cli, "_bar", bar_then_ctrl_c)
    env = env_for(settings) | {"IMAGESTUDIO_MODELS_PATH": str(tmp_path / "models")}
    assert runner.invoke(app, ["models", "add", "hub-sd", "test/tiny-sd", "--family", "sd"], env=env).exit_code == 0
    with HubServer({"test/tiny-sd": models_dir / "tiny-sd"}) as hub:
        env |= {"IMAGESTUDIO_HUB_URL": hub.url}
        cancelled = runner.invoke(app, ["models", "pull", "hub-sd"], env=env)
        assert cancelled.exit_code == 130 and "cancelled" in cancelled.stderr and "resumes it" in cancelled.stderr
        kept = (tmp_path / "models" / "hub-sd" / (unet + ".part")).stat().st_size
        hub.served.clear()
        resumed = runner.invoke(app, ["models", "pull", "hub-sd"], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert [s.range for s in hub.served if s.path == unet] == [f"bytes={kept}-"]
