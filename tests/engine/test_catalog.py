import pytest

from engine.data.db import init_db, make_engine
from engine.errors import InvalidRequest, ModelNotFound
from engine.generation.catalog import BUILTIN_MODELS, Catalog

SEED_SLUGS = {"flux-schnell", "flux-2-klein-9b", "flux-2-klein-4b", "flux-2-dev", "flux-2-pro", "stable-diffusion",
              "sdxl-lightning", "dreamshaper-8-lcm", "lucid-origin", "phoenix-1"}


@pytest.fixture
def catalog(tmp_path):
    db = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    init_db(db)
    return Catalog(db)


def test_every_seed_slug_is_in_the_catalog(catalog):
    slugs = {spec.slug for spec in catalog.all()}
    assert SEED_SLUGS <= slugs
    assert {"tiny-sd", "tiny-sdxl", "tiny-flux"} <= slugs


def test_open_models_name_a_hub_repository_and_a_pipeline(catalog):
    for slug in SEED_SLUGS - {"flux-2-pro", "lucid-origin", "phoenix-1"}:
        spec = catalog.get(slug)
        assert spec.open_weights and spec.repo_id and "/" in spec.repo_id
        assert spec.pipeline_class and spec.default_steps >= 1 and spec.max_size >= spec.min_size


def test_proprietary_models_are_unavailable_with_a_reason(catalog):
    for slug in ("flux-2-pro", "lucid-origin", "phoenix-1"):
        spec = catalog.get(slug)
        assert not spec.open_weights
        assert "no open weights" in spec.unavailable_reason


def test_unknown_model_names_the_known_ones(catalog):
    with pytest.raises(ModelNotFound) as info:
        catalog.get("dall-e-9")
    assert "flux-schnell" in info.value.message and info.value.field == "model"


def test_custom_model_from_a_local_folder(catalog, models_dir):
    spec = catalog.add_custom("my-sd", str(models_dir / "tiny-sd"), "sd", name="Mine")
    assert spec.local_path == str((models_dir / "tiny-sd").resolve()) and spec.custom
    assert catalog.get("my-sd").name == "Mine"
    assert "my-sd" in {s.slug for s in catalog.all()}
    hub = catalog.add_custom("hub-one", "someone/some-model", "sdxl")
    assert hub.repo_id == "someone/some-model" and hub.local_path is None
    catalog.remove_custom("hub-one")
    with pytest.raises(ModelNotFound):
        catalog.get("hub-one")


def test_custom_model_errors(catalog, tmp_path):
    with pytest.raises(InvalidRequest, match="built-in"):
        catalog.add_custom("flux-schnell", "x/y", "flux")
    with pytest.raises(InvalidRequest, match="model_index.json"):
        catalog.add_custom("empty", str(tmp_path), "sd")
    with pytest.raises(InvalidRequest, match="family"):
        catalog.add_custom("odd", "x/y", "dalle")


def test_builtin_slugs_are_unique():
    slugs = [spec.slug for spec in BUILTIN_MODELS]
    assert len(slugs) == len(set(slugs))
