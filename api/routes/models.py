from fastapi import APIRouter

from api.deps import EngineDep
from api.errors import current_request_id
from api.responses import error_responses
from api.schemas import Envelope, ModelInfo
from engine.catalog import ModelSpec
from engine.errors import ModelNotFound, NotFound
from engine.pipelines import WeightsState
from engine.service import ImageEngine

router = APIRouter(prefix="/models", tags=["models"])


def model_info(engine: ImageEngine, spec: ModelSpec) -> ModelInfo:
    alias_of = engine.model_aliases().get(spec.slug)
    state, reason = engine.pipelines.state(engine.catalog.get(alias_of) if alias_of else spec)
    if alias_of:
        reason = f"served by {alias_of} on this server (model alias)" + (f"; {reason}" if reason else "")
    return ModelInfo(alias_of=alias_of,
        slug=spec.slug, name=spec.name, description=spec.description,
        available=state != WeightsState.UNAVAILABLE, status=state, reason=reason, family=spec.family,
        default_steps=spec.default_steps, default_guidance=spec.default_guidance, min_size=spec.min_size,
        max_size=spec.max_size, supports_negative_prompt=spec.supports_negative, repo_id=spec.repo_id,
        license=spec.license, default=spec.slug == engine.settings.default_model,
    )


@router.get("", response_model=Envelope[list[ModelInfo]])
def list_models(engine: EngineDep):
    """Every model this server knows (no auth needed), with whether it can run here and why not."""
    data = [model_info(engine, spec) for spec in engine.catalog.all()]
    return Envelope[list[ModelInfo]](data=data, request_id=current_request_id())


@router.get("/{slug}", response_model=Envelope[ModelInfo], responses=error_responses(404))
def get_model(slug: str, engine: EngineDep):
    try:
        spec = engine.catalog.get(slug)
    except ModelNotFound as exc:  # in a path, an unknown model is a missing resource
        raise NotFound(exc.message) from exc
    return Envelope[ModelInfo](data=model_info(engine, spec), request_id=current_request_id())
