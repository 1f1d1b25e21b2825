from fastapi import APIRouter

from api.deps import EngineDep
from api.errors import current_request_id
from api.responses import error_responses
from api.schemas import Envelope, ModelInfo
from engine.errors import ModelNotFound, NotFound
from engine.generation.catalog import ModelSpec
from engine.generation.pipelines import WeightsState
from engine.service import ImageEngine

router = APIRouter(prefix="/models", tags=["models"])


def model_info(engine: ImageEngine, spec: ModelSpec) -> ModelInfo:
    """A model as listed; an aliased slug keeps its name and describes the model that serves it here."""
    alias_of = engine.model_aliases().get(spec.slug)
    runs = engine.catalog.get(alias_of) if alias_of else spec
    state, reason = engine.pipelines.state(runs)
    route = None if alias_of else engine.route_for(spec.slug)
    if alias_of:
        reason = f"served by {alias_of} on this server (model alias)" + (f"; {reason}" if reason else "")
    elif route is not None:
        state, reason = WeightsState.READY, f"runs via {route.label}, under this server's keys and credits"
    return ModelInfo(
        slug=spec.slug, name=spec.name, description=spec.description, alias_of=alias_of,
        available=state != WeightsState.UNAVAILABLE, status=state, reason=reason, family=runs.family,
        default_steps=runs.default_steps, default_guidance=runs.default_guidance, min_size=runs.min_size,
        max_size=runs.max_size, supports_negative_prompt=runs.supports_negative, repo_id=runs.repo_id,
        license=runs.license, default=spec.slug == engine.default_model(),
        provider=route.provider if route else None,
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
