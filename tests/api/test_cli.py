import io

from PIL import Image
from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()


def env_for(settings):
    return {"IMAGESTUDIO_DATA_DIR": str(settings.data_dir), "IMAGESTUDIO_MODELS_PATH": str(settings.models_dir),
            "IMAGESTUDIO_DEVICE": "cpu"}


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
