import pytest

from tests.api.test_image_studio_and_prompts import png_data_url, red_square

# On a test box the documents' proprietary and large models are served by tiny ones through model aliases, the
# way an admin would set them up (`imagestudio models alias flux-2-pro …`): only the model is substituted.
TEST_BOX_ALIASES = {"flux-2-pro": "tiny-flux", "flux-2-klein-9b": "tiny-flux"}


@pytest.fixture
def contract_engine(engine):
    for slug, target in TEST_BOX_ALIASES.items():
        engine.set_model_alias(slug, target)
    return engine


@pytest.fixture
def tiny_png_data_url() -> str:
    return png_data_url(red_square())
