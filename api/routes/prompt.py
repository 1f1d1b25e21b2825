"""POST /prompt/enhance and /prompt/build: prompt tools, free of charge and outside the daily and monthly
quotas (as the seed API promises), behind a per-minute guard of their own."""

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Account, AccountDep, EngineDep
from api.responses import error_responses, ok, outbound
from api.schemas import Envelope
from engine.service import ImageEngine
from engine.tools.prompts import MAX_PROMPT_CHARS, MAX_TONE_CHARS, build_prompt

router = APIRouter(prefix="/prompt", tags=["prompt"])


class EnhanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # a misspelt field or a wrong type must not pass

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    tone: str | None = Field(default=None, max_length=MAX_TONE_CHARS, examples=["anime, cozy"],
                             description="Free text; the known tones (cinematic, vintage, …) have curated wording")


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str | None = Field(default=None, max_length=500)
    setting: str | None = Field(default=None, max_length=500)
    mood: str | None = Field(default=None, max_length=500)
    art_style: str | None = Field(default=None, max_length=500)
    lighting: str | None = Field(default=None, max_length=500)
    camera: str | None = Field(default=None, max_length=500)
    extras: str | list[str] | None = None
    enhance: bool = Field(default=False, description="Also run the result through the enhancer")
    tone: str | None = Field(default=None, max_length=MAX_TONE_CHARS)


class EnhancedPrompt(BaseModel):
    prompt: str
    original: str
    tone: str | None
    source: str = Field(description="`builtin`, or the text model's provider")
    fallback_reason: str | None = Field(description="Why the built-in enhancer stood in for the text model")


class BuiltPrompt(BaseModel):
    prompt: str
    built: str = Field(description="The prompt as built from the fields, before any enhancement")
    enhanced: bool
    original: str | None = None
    tone: str | None = None
    source: str | None = None
    fallback_reason: str | None = None


RESPONSES = error_responses(400, 401, 403, 413, 429)


def enhanced_payload(result) -> dict:
    return {"prompt": result.prompt, "original": result.original, "tone": result.tone, "source": result.source,
            "fallback_reason": result.fallback_reason}


async def enhance_prompt(engine: ImageEngine, account: Account, prompt: str, tone: str | None):
    return await outbound(engine, engine.enhance_prompt, account.workspace.id, prompt, tone)  # may ask a text model


@router.post("/enhance", response_model=Envelope[EnhancedPrompt], responses=RESPONSES)
async def enhance(body: EnhanceRequest, account: AccountDep, engine: EngineDep):
    """A richer prompt: the built-in offline enhancer, or the text model chosen in admin settings."""
    return ok(enhanced_payload(await enhance_prompt(engine, account, body.prompt, body.tone)))


@router.post("/build", response_model=Envelope[BuiltPrompt], responses=RESPONSES)
async def build(body: BuildRequest, account: AccountDep, engine: EngineDep):
    """One well-formed prompt from structured fields (at least one), optionally enhanced."""
    prompt = build_prompt(subject=body.subject, setting=body.setting, mood=body.mood, art_style=body.art_style,
                          lighting=body.lighting, camera=body.camera, extras=body.extras)
    if not body.enhance:
        await asyncio.to_thread(engine.guard_prompt_tools, account.workspace.id)
        return ok({"prompt": prompt, "built": prompt, "enhanced": False})
    result = await enhance_prompt(engine, account, prompt, body.tone)
    return ok(enhanced_payload(result) | {"built": prompt, "enhanced": True})
