import asyncio
import base64
import logging

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import CurrentUser, EngineDep
from api.errors import current_request_id, error_for, validation_details
from api.schemas import BatchData, BatchResult, Envelope, ErrorEnvelope, ErrorInfo, GenerateRequest, ImageData
from engine.accounts import plan_for
from engine.db import session_scope
from engine.errors import EngineError, GenerationFailed, InvalidRequest
from engine.generation import GenerationParams
from engine.models import User
from engine.service import GenerationResult, ImageEngine

log = logging.getLogger(__name__)

router = APIRouter(prefix="/generate", tags=["generate"])

ERROR_RESPONSES = {status: {"model": ErrorEnvelope} for status in (400, 401, 422, 500, 503)}


def image_data(result: GenerationResult) -> ImageData:
    data_url = "data:image/png;base64," + base64.b64encode(result.png).decode()
    p = result.params
    return ImageData(
        id=result.image_id, job_id=result.job_id, image=data_url, image_url=data_url, model=p.model,
        prompt=p.prompt, negative_prompt=p.negative_prompt, width=p.width, height=p.height, steps=p.steps,
        guidance_scale=p.guidance_scale, seed=p.seed, duration_ms=result.duration_ms,
    )


def _batch_limit(engine: ImageEngine, user: User) -> int:
    with session_scope(engine.db) as session:
        plan = plan_for(session, user)
    return plan.max_batch_size if plan else 1


@router.post("", response_model=Envelope[ImageData] | Envelope[BatchData], responses=ERROR_RESPONSES)
async def generate(body: GenerateRequest, user: CurrentUser, engine: EngineDep):
    """Generate one image, or a batch with `items` (each item succeeds or fails on its own)."""
    if body.items is None:
        if body.prompt is None:
            raise RequestValidationError([{"loc": ("body", "prompt"), "msg": "Field required", "type": "missing"}])
        params = GenerationParams(**body.model_dump(exclude={"items"}))
        task = engine.submit_generation(user, params)
        result = await asyncio.wrap_future(task.future)
        return Envelope[ImageData](data=image_data(result), request_id=current_request_id())
    return Envelope[BatchData](data=await _generate_batch(body, user, engine), request_id=current_request_id())


async def _generate_batch(body: GenerateRequest, user: User, engine: ImageEngine) -> BatchData:
    limit = _batch_limit(engine, user)
    if len(body.items) > limit:
        raise InvalidRequest(f"a batch may hold at most {limit} items on your plan", field="items")
    defaults = body.model_dump(exclude={"items"}, exclude_unset=True)
    outcomes: list = []
    for index, item in enumerate(body.items):
        try:
            params = GenerationParams.model_validate({**defaults, **item})
            outcomes.append(engine.submit_generation(user, params).future)
        except ValidationError as exc:
            detail = validation_details(exc.errors())[0]
            outcomes.append(ErrorInfo(code="validation_error", message=f"items.{index}.{detail['field']}: "
                                      f"{detail['message']}", field=f"items.{index}.{detail['field']}"))
        except EngineError as exc:
            outcomes.append(ErrorInfo(**error_for(exc)))
    results = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, ErrorInfo):
            results.append(BatchResult(index=index, success=False, error=outcome))
            continue
        try:
            result = await asyncio.wrap_future(outcome)
            results.append(BatchResult(index=index, success=True, data=image_data(result)))
        except EngineError as exc:
            results.append(BatchResult(index=index, success=False, error=ErrorInfo(**error_for(exc))))
    succeeded = sum(r.success for r in results)
    return BatchData(results=results, total=len(results), succeeded=succeeded, failed=len(results) - succeeded)
