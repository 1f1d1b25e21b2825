"""POST /prompt/enhance and /prompt/build: prompt tools (metered requests, free of credits)."""

import asyncio

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import AccountDep, EngineDep
from api.responses import error_responses, metered, ok
from api.schemas import Envelope
from engine.metering import Admission
from engine.prompts import MAX_PROMPT_CHARS, build_prompt

router = APIRouter(prefix="/prompt", tags=["prompt"])


class EnhanceRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    tone: str | None = Field(default=None, max_length=40, examples=["cinematic"])


class BuildRequest(BaseModel):
    subject: str | None = Field(default=None, max_length=500)
    setting: str | None = Field(default=None, max_length=500)
    mood: str | None = Field(default=None, max_length=500)
    art_style: str | None = Field(default=None, max_length=500)
    lighting: str | None = Field(default=None, max_length=500)
    camera: str | None = Field(default=None, max_length=500)
    extras: str | list[str] | None = None
    enhance: bool = Field(default=False, description="Also run the result through the enhancer")
    tone: str | None = Field(default=None, max_length=40)


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


@router.post("/enhance", response_model=Envelope[EnhancedPrompt], responses=RESPONSES)
async def enhance(body: EnhanceRequest, request: Request, account: AccountDep, engine: EngineDep):
    """A richer prompt: the built-in offline enhancer, or the text model chosen in admin settings."""
    enhancer = engine.prompt_enhancer()

    async def work(admission: Admission):
        result = await asyncio.to_thread(enhancer.enhance, body.prompt, body.tone)
        admission.succeeded()
        return ok(enhanced_payload(result))

    return await metered(request, engine, account.workspace.id, requests=1, credits=0, work=work)


@router.post("/build", response_model=Envelope[BuiltPrompt], responses=RESPONSES)
async def build(body: BuildRequest, request: Request, account: AccountDep, engine: EngineDep):
    """One well-formed prompt from structured fields (at least one), optionally enhanced."""
    prompt = build_prompt(subject=body.subject, setting=body.setting, mood=body.mood, art_style=body.art_style,
                          lighting=body.lighting, camera=body.camera, extras=body.extras)

    async def work(admission: Admission):
        data = {"prompt": prompt, "built": prompt, "enhanced": False}
        if body.enhance:
            result = await asyncio.to_thread(engine.prompt_enhancer().enhance, prompt, body.tone)
            data = enhanced_payload(result) | {"built": prompt, "enhanced": True}
        admission.succeeded()
        return ok(data)

    return await metered(request, engine, account.workspace.id, requests=1, credits=0, work=work)
