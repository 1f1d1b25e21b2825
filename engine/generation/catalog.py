"""The model catalog: every slug the API accepts, where its weights come from, how to run it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlmodel import select

from engine.data.db import read_scope, session_scope
from engine.data.tables import CustomModel
from engine.errors import InvalidRequest, ModelNotFound

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# The pipeline classes by family: text-to-image and the image-to-image ("edit") variant.
FAMILY_PIPELINES: dict[str, tuple[str, str | None]] = {
    "sd": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    "sdxl": ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
    "flux": ("FluxPipeline", "FluxImg2ImgPipeline"),
    "flux2": ("Flux2Pipeline", "Flux2Pipeline"),
    "flux2-klein": ("Flux2KleinPipeline", "Flux2KleinPipeline"),
    # Stability's x4 upscaler: an image and a prompt in, the image at four times the size out.
    "sd-upscale": ("StableDiffusionUpscalePipeline", "StableDiffusionUpscalePipeline"),
}
# The families a user's own text-to-image model may belong to.
CUSTOM_FAMILIES = ("sd", "sdxl", "flux", "flux2", "flux2-klein")
# Inpainting (an image and a mask: only the mask's white area is repainted). FLUX.2 has no inpaint pipeline.
FAMILY_INPAINT_PIPELINES: dict[str, str] = {
    "sd": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLInpaintPipeline",
    "flux": "FluxInpaintPipeline",
}

# What a catalog model is for. Only "generate" models are offered as text-to-image choices; the others help one:
# an inpainting checkpoint (a UNet trained with the mask as input) and an upscaler.
TASKS = ("generate", "inpaint", "upscale")
UPSCALER_FACTOR = 4


@dataclass(frozen=True)
class ModelSpec:
    slug: str
    name: str
    description: str
    family: str  # key of FAMILY_PIPELINES, or "proprietary"
    repo_id: str | None = None  # Hugging Face repository, or None
    local_path: str | None = None  # a diffusers folder on this machine
    default_steps: int = 25
    default_guidance: float = 7.0
    min_size: int = 256
    max_size: int = 1024
    native_size: int = 1024  # the square size it was trained at; aspect ratios keep its area
    size_multiple: int = 8
    supports_negative: bool = True
    true_cfg_scale: float | None = None  # negative prompts through true CFG at this default scale (FLUX.1)
    uses_guidance: bool = True  # False: guidance-distilled, guidance_scale has no effect
    max_sequence_length: int | None = None
    scheduler: str | None = None  # a scheduler class to swap in after loading
    scheduler_config: dict = field(default_factory=dict)
    unet_weights: tuple[str, str] | None = None  # (repo, file) of a UNet that replaces the base one
    license: str = ""
    unavailable_reason: str | None = None  # set for proprietary models with no open weights
    vendor: str | None = None  # who serves a proprietary model (a remote provider may plug in here)
    # Models that stand in for a proprietary one when no alias is set, the first whose weights are here.
    fallbacks: tuple[str, ...] = ()
    tiny: bool = False
    custom: bool = False
    task: str = "generate"  # one of TASKS
    # A dedicated inpainting checkpoint of this model's family: masks go through it when its weights are here
    # (it repaints seamlessly); otherwise through this model's own weights in the family's inpaint pipeline.
    inpaint_model: str | None = None
    provider: str | None = None  # set when this request runs at a vendor (engine/providers): "bfl", "leonardo"
    # About what `imagestudio models pull` fetches (the diffusers files, a replacement UNet included), in bytes,
    # as the hub lists them; None: not measured. The pull itself checks the hub's own sizes against the disk.
    download_bytes: int | None = None

    @property
    def pipeline_class(self) -> str | None:
        if self.task == "inpaint":
            return FAMILY_INPAINT_PIPELINES.get(self.family)
        return FAMILY_PIPELINES.get(self.family, (None, None))[0]

    @property
    def edit_pipeline_class(self) -> str | None:
        if self.task == "inpaint":
            return None  # its UNet takes the mask as input: it only inpaints
        return FAMILY_PIPELINES.get(self.family, (None, None))[1]

    @property
    def inpaint_pipeline_class(self) -> str | None:
        if self.task == "upscale":
            return None
        return FAMILY_INPAINT_PIPELINES.get(self.family)

    @property
    def text_to_image(self) -> bool:
        return self.task == "generate"

    @property
    def multi_reference(self) -> bool:
        """FLUX.2 edits with several reference images at once; the others edit one image."""
        return self.family in ("flux2", "flux2-klein")

    @property
    def edit_uses_strength(self) -> bool:
        """FLUX.2 pipelines edit by reference image, and the upscaler adds a fixed noise level: there is no
        strength to set."""
        return self.family not in ("flux2", "flux2-klein", "sd-upscale")

    @property
    def open_weights(self) -> bool:
        return self.unavailable_reason is None


_PROPRIETARY = "proprietary model with no open weights; it can only run on its vendor's service"

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        slug="flux-schnell", name="FLUX.1 [schnell]",
        description="Black Forest Labs' 12B timestep-distilled FLUX model: sharp images in 1-4 steps. Apache-2.0.",
        family="flux", repo_id="black-forest-labs/FLUX.1-schnell", default_steps=4, default_guidance=0.0,
        min_size=256, max_size=1024, size_multiple=16, true_cfg_scale=4.0, uses_guidance=False,
        max_sequence_length=256, license="apache-2.0",
        download_bytes=33_725_000_000,  # bf16 transformer 23.8 GB, T5-XXL 9.5 GB, CLIP-L, VAE
    ),
    ModelSpec(
        slug="flux-2-klein-9b", name="FLUX.2 [klein] 9B",
        description="Distilled 9B FLUX.2 model: sub-second generation and editing with multi-reference support.",
        family="flux2-klein", repo_id="black-forest-labs/FLUX.2-klein-9B", default_steps=4, default_guidance=1.0,
        size_multiple=16, supports_negative=False, uses_guidance=False, license="flux-non-commercial (gated)",
    ),
    ModelSpec(
        slug="flux-2-klein-4b", name="FLUX.2 [klein] 4B",
        description="Distilled 4B FLUX.2 model, small enough for consumer GPUs. Apache-2.0.",
        family="flux2-klein", repo_id="black-forest-labs/FLUX.2-klein-4B", default_steps=4, default_guidance=1.0,
        size_multiple=16, supports_negative=False, uses_guidance=False, license="apache-2.0",
    ),
    ModelSpec(
        slug="flux-2-dev", name="FLUX.2 [dev]",
        description="32B open-weight FLUX.2 model for the highest quality generation and editing (needs a large GPU).",
        family="flux2", repo_id="black-forest-labs/FLUX.2-dev", default_steps=28, default_guidance=4.0,
        size_multiple=16, supports_negative=False, license="flux-dev-non-commercial (gated)",
    ),
    ModelSpec(
        slug="flux-2-pro", name="FLUX.2 [pro]",
        description="Black Forest Labs' flagship FLUX.2 model, served only through their API.",
        family="proprietary", unavailable_reason=_PROPRIETARY + " (Black Forest Labs API)",
        vendor="Black Forest Labs", fallbacks=("flux-2-dev", "flux-2-klein-9b", "flux-2-klein-4b"),
        size_multiple=16, supports_negative=False,  # BFL's sizes: multiples of 16; FLUX.2 has no negative prompt
    ),
    ModelSpec(
        slug="stable-diffusion", name="Stable Diffusion XL",
        description="Stability AI's SDXL 1.0 base model: versatile 1024px generation with negative prompts.",
        family="sdxl", repo_id="stabilityai/stable-diffusion-xl-base-1.0", default_steps=30, default_guidance=7.0,
        min_size=512, max_size=1024, license="openrail++", inpaint_model="sdxl-inpainting",
        download_bytes=14_213_000_000,  # the fp32 UNet 10.3 GB, two text encoders 3.3 GB, VAEs
    ),
    ModelSpec(
        slug="sdxl-inpainting", name="SDXL Inpainting 0.1",
        description="The SDXL base model fine-tuned for inpainting (the mask is an input of its UNet): used for "
                    "Stable Diffusion XL's masked edits when its weights are here.",
        family="sdxl", repo_id="diffusers/stable-diffusion-xl-1.0-inpainting-0.1", task="inpaint",
        default_steps=30, default_guidance=8.0, min_size=512, max_size=1024, license="openrail++",
    ),
    ModelSpec(
        slug="sd-x4-upscaler", name="Stable Diffusion x4 Upscaler",
        description="Stability AI's text-guided latent upscaler: an image of up to 512 px at four times the size.",
        family="sd-upscale", repo_id="stabilityai/stable-diffusion-x4-upscaler", task="upscale",
        default_steps=20, default_guidance=9.0, min_size=256, max_size=2048, native_size=2048, size_multiple=32,
        license="openrail++",
    ),
    ModelSpec(
        slug="sdxl-lightning", name="SDXL Lightning (4-step)",
        description="ByteDance's progressive-distilled SDXL UNet: SDXL quality in 4 steps.",
        family="sdxl", repo_id="stabilityai/stable-diffusion-xl-base-1.0",
        unet_weights=("ByteDance/SDXL-Lightning", "sdxl_lightning_4step_unet.safetensors"),
        scheduler="EulerDiscreteScheduler", scheduler_config={"timestep_spacing": "trailing"},
        default_steps=4, default_guidance=0.0, min_size=512, max_size=1024, license="openrail++",
        download_bytes=19_348_000_000,  # the SDXL base files and the 5.1 GB fp16 Lightning UNet
    ),
    ModelSpec(
        slug="dreamshaper-8-lcm", name="DreamShaper 8 LCM",
        description="Lykon's DreamShaper 8 (SD 1.5 family) with latent consistency: good images in 4-8 steps.",
        family="sd", repo_id="Lykon/dreamshaper-8-lcm", scheduler="LCMScheduler",
        default_steps=6, default_guidance=1.5, min_size=256, max_size=768, native_size=512,
        license="creativeml-openrail-m", download_bytes=4_266_000_000,  # fp32 UNet 3.4 GB, CLIP, VAE
    ),
    ModelSpec(
        slug="lucid-origin", name="Lucid Origin",
        description="Leonardo.Ai's Lucid Origin model.",
        family="proprietary", unavailable_reason=_PROPRIETARY + " (Leonardo.Ai)", vendor="Leonardo.Ai",
        fallbacks=("flux-2-dev", "flux-schnell", "stable-diffusion"),
    ),
    ModelSpec(
        slug="phoenix-1", name="Phoenix 1.0",
        description="Leonardo.Ai's Phoenix 1.0 model.",
        family="proprietary", unavailable_reason=_PROPRIETARY + " (Leonardo.Ai)", vendor="Leonardo.Ai",
        fallbacks=("flux-2-dev", "flux-schnell", "stable-diffusion"),
    ),
    # Tiny offline models: real architectures with random weights, built by the project itself.
    ModelSpec(
        slug="tiny-sd", name="Tiny SD (offline test model)",
        description="An SD 1.5-family pipeline with tiny random weights, built locally; for tests and demos.",
        family="sd", default_steps=2, default_guidance=5.0, tiny=True, native_size=256,
        inpaint_model="tiny-sd-inpaint",
    ),
    ModelSpec(
        slug="tiny-sdxl", name="Tiny SDXL (offline test model)",
        description="An SDXL pipeline with tiny random weights, built locally; for tests and demos.",
        family="sdxl", default_steps=2, default_guidance=5.0, tiny=True, native_size=256,
        inpaint_model="tiny-sdxl-inpaint",
    ),
    ModelSpec(
        slug="tiny-sd-inpaint", name="Tiny SD Inpainting (offline test model)",
        description="An SD 1.5-family inpainting pipeline (9-channel UNet) with tiny random weights.",
        family="sd", task="inpaint", default_steps=2, default_guidance=5.0, tiny=True, native_size=256,
    ),
    ModelSpec(
        slug="tiny-sdxl-inpaint", name="Tiny SDXL Inpainting (offline test model)",
        description="An SDXL inpainting pipeline (9-channel UNet) with tiny random weights.",
        family="sdxl", task="inpaint", default_steps=2, default_guidance=5.0, tiny=True, native_size=256,
    ),
    ModelSpec(
        slug="tiny-sd-upscaler", name="Tiny x4 Upscaler (offline test model)",
        description="A Stable Diffusion x4 upscaler pipeline with tiny random weights: upscales the tiny models' "
                    "images.",
        family="sd-upscale", task="upscale", default_steps=2, default_guidance=5.0, tiny=True, min_size=256,
        max_size=1024, native_size=1024, size_multiple=32,
    ),
    ModelSpec(
        slug="tiny-flux", name="Tiny FLUX (offline test model)",
        description="A FLUX.1 pipeline with tiny random weights, built locally; for tests and demos.",
        family="flux", default_steps=2, default_guidance=0.0, size_multiple=16, true_cfg_scale=4.0,
        uses_guidance=False, max_sequence_length=64, tiny=True, native_size=256,
    ),
)


class Catalog:
    """Built-in specs plus the models users added (kept in the database)."""

    def __init__(self, db_engine):
        self._db = db_engine
        self._builtin = {spec.slug: spec for spec in BUILTIN_MODELS}

    def all(self, *, helpers: bool = False) -> list[ModelSpec]:
        """The text-to-image models (what clients and the studio choose from); with ``helpers``, also the
        inpainting checkpoints and upscalers they use."""
        builtin = [spec for spec in self._builtin.values() if helpers or spec.text_to_image]
        return builtin + self._custom_specs()

    def upscaler_for(self, spec: ModelSpec) -> ModelSpec:
        """The x4 upscaler for images of ``spec``: the tiny one for the tiny models (its random weights would only
        spoil a real picture), else Stability's."""
        return self._builtin["tiny-sd-upscaler" if spec.tiny else "sd-x4-upscaler"]

    def get(self, slug: str) -> ModelSpec:
        if slug in self._builtin:
            return self._builtin[slug]
        with read_scope(self._db) as session:
            row = session.get(CustomModel, slug)
        if row is None:
            known = ", ".join(spec.slug for spec in self.all())
            raise ModelNotFound(f"unknown model '{slug}'; known models: {known}", field="model")
        return _custom_spec(row)

    def add_custom(self, slug: str, source: str, family: str, name: str | None = None,
                   description: str = "") -> ModelSpec:
        if slug in self._builtin:
            raise InvalidRequest(f"'{slug}' is a built-in model slug", field="slug")
        if family not in CUSTOM_FAMILIES:
            raise InvalidRequest(f"family must be one of {', '.join(CUSTOM_FAMILIES)}", field="family")
        if not _SLUG.fullmatch(slug):
            raise InvalidRequest("slug may hold letters, digits, '-', '_' and '.' (64 at most)", field="slug")
        path = Path(source).expanduser()
        if path.is_absolute() or source.startswith("."):
            if not (path / "model_index.json").exists():
                raise InvalidRequest(f"{source} is not a diffusers folder (no model_index.json)", field="source")
            source = str(path.resolve())
        row = CustomModel(slug=slug, name=name or slug, source=source, family=family, description=description)
        with session_scope(self._db) as session:
            session.merge(row)
            session.commit()
        return _custom_spec(row)

    def check_alias(self, slug: str, target: str) -> None:
        """An alias maps a requested slug (a catalog slug, or a new name) to a model that runs here.
        Aliases never chain: the target is a model with open weights, not another alias."""
        if not _SLUG.fullmatch(slug):
            raise InvalidRequest("an alias may hold letters, digits, '-', '_' and '.' (64 at most)", field="slug")
        spec = self.get(target)
        if not spec.open_weights:
            raise InvalidRequest(f"'{target}' has no open weights: an alias must point at a model that runs here",
                                 field="target")
        if not spec.text_to_image:
            raise InvalidRequest(f"'{target}' is an {spec.task} model, not a text-to-image one", field="target")
        if slug == target:
            raise InvalidRequest("a model cannot be an alias of itself", field="target")

    def remove_custom(self, slug: str) -> None:
        with session_scope(self._db) as session:
            row = session.get(CustomModel, slug)
            if row is None:
                raise ModelNotFound(f"no custom model '{slug}'")
            session.delete(row)
            session.commit()

    def _custom_specs(self) -> list[ModelSpec]:
        with read_scope(self._db) as session:
            return [_custom_spec(row) for row in session.exec(select(CustomModel)).all()]


def _custom_spec(row: CustomModel) -> ModelSpec:
    base = next(s for s in BUILTIN_MODELS
                if s.family == row.family and s.text_to_image and not s.tiny and s.unet_weights is None)
    is_folder = row.source.startswith("/")
    return replace(
        base, slug=row.slug, name=row.name, description=row.description or f"Custom {row.family} model",
        repo_id=None if is_folder else row.source, local_path=row.source if is_folder else None,
        default_steps=row.default_steps or base.default_steps,
        default_guidance=row.default_guidance if row.default_guidance is not None else base.default_guidance,
        scheduler=None, scheduler_config={}, license="", custom=True, inpaint_model=None, download_bytes=None,
        uses_guidance=True,  # a custom FLUX.1 may be a guidance-embedded dev model: no false warning
    )
