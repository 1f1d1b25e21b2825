"""The studio's engine work, metered exactly like the API's: admit before, settle after.

Nothing here touches the UI: pages call these and show the outcome. Blocking engine calls run in
threads (``asyncio.to_thread``) and jobs are awaited through their futures, so the event loop that
serves every browser stays free. (Not ``run.io_bound``: that skips its call while the app stops, and
a charge must be settled even then.)
"""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from PIL import Image

from engine.billing.metering import Admission
from engine.billing.pricing import BACKGROUND_REMOVAL_CREDITS
from engine.data.tables import User
from engine.errors import EngineError, JobCancelled
from engine.generation.jobs import GenerationResult
from engine.generation.params import MAX_SEED, ResolvedParams
from engine.generation.worker import Task
from engine.service import ImageEngine
from engine.tools.prompts import EnhancedPrompt


@asynccontextmanager
async def metered(engine: ImageEngine, user: User, *, requests: int = 1,
                  credits: int = 0) -> AsyncIterator[Admission]:
    """Take the plan's units (limits, concurrency, credits) or raise; give back what did not succeed."""
    admission = await asyncio.to_thread(engine.meter.admit, user.workspace_id, requests=requests, credits=credits)
    try:
        yield admission
    finally:
        await asyncio.to_thread(engine.meter.settle, admission)


def seeds_for(count: int, seed: int | None, locked: bool) -> list[int]:
    """A locked seed gives seed, seed+1, …; otherwise every image gets a fresh random seed."""
    if locked and seed is not None:
        return [(seed + i) % (MAX_SEED + 1) for i in range(count)]
    return [secrets.randbelow(MAX_SEED + 1) for _ in range(count)]


@dataclass
class Progress:
    count: int  # images in the run
    finished: int  # of them, done (any outcome)
    running: list[int]  # the images being made now (0-based): several when the worker batched them
    step: int  # the step of the running images, out of ``total`` (0: not started, e.g. loading the model)
    total: int
    fraction: float  # of the whole run, every image counted by its own steps
    preview: bytes | None

    def label(self) -> str:
        """ "Step 3 of 8", "Image 2 of 3 · Step 3 of 8", "Images 1–2 of 2 · Step 3 of 8", or "" before a step."""
        if not self.total or not self.running:
            return ""
        step = f"Step {self.step} of {self.total}"
        if self.count == 1:
            return step
        first, last = self.running[0] + 1, self.running[-1] + 1
        which = f"Image {first}" if first == last else f"Images {first}–{last}"
        return f"{which} of {self.count} · {step}"


class GenerationRun:
    """One click of Generate: ``count`` images, one job each, admitted and settled together."""

    def __init__(self, engine: ImageEngine, user: User, params: list[ResolvedParams], *,
                 init_image: Image.Image | None = None, strength: float = 0.6, source_image_id: str | None = None,
                 kind: str | None = None, mask: Image.Image | None = None):
        self.engine = engine
        self.user = user
        self.params = params
        self.init_image = init_image
        self.strength = strength
        self.source_image_id = source_image_id
        self._kind = kind  # "upscale"; otherwise generate, edit or inpaint, by the image and mask
        self.mask = mask  # white = repainted (inpainting)
        self.costs = [engine.credits_for(p) for p in params]
        self.tasks: list[Task] = []
        self.errors: list[EngineError] = []
        self.cancelled = False

    @property
    def kind(self) -> str:
        if self._kind:
            return self._kind
        return "generate" if self.init_image is None else "inpaint" if self.mask is not None else "edit"

    def progress(self) -> Progress:
        """Every image's own progress: images the worker runs as one batch advance together."""
        tasks = list(self.tasks)
        finished = sum(task.future.done() for task in tasks)
        running = [i for i, task in enumerate(tasks) if not task.future.done() and task.total]
        done_steps = finished + sum(tasks[i].step / tasks[i].total for i in running)
        lead = tasks[running[0]] if running else None
        return Progress(count=len(self.params), finished=finished, running=running,
                        step=lead.step if lead else 0, total=lead.total if lead else 0,
                        fraction=done_steps / max(1, len(self.params)), preview=lead.preview if lead else None)

    async def cancel(self) -> None:
        """Cancel every job of the run: queued ones at once, the running one at its next step."""
        self.cancelled = True
        # A queued job that never ran is recorded as cancelled in the database: off the loop.
        await asyncio.to_thread(self._cancel_jobs, list(self.tasks))

    def _cancel_jobs(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.engine.cancel_job(task.id)

    async def run(self, on_result: Callable[[GenerationResult, int], Awaitable[None] | None]) -> int:
        """Run every image, calling ``on_result(result, credits)`` as each finishes; returns how many succeeded."""
        # The engine reads the database and writes job rows: off the event loop that serves every browser.
        storage = await asyncio.to_thread(self.engine.storage_for, self.user)
        done = 0
        async with metered(self.engine, self.user, requests=len(self.params), credits=sum(self.costs)) as admission:
            try:
                for params, cost in zip(self.params, self.costs, strict=True):
                    task = await asyncio.to_thread(
                        self.engine.submit_generation, self.user, params, store=storage["store"], kind=self.kind,
                        init_image=self.init_image, strength=self.strength, charge_id=admission.charge_id, cost=cost,
                        source_image_id=self.source_image_id, mask=self.mask)
                    self.tasks.append(task)
                    if self.cancelled:  # cancelled while this one was being queued
                        await asyncio.to_thread(self._cancel_jobs, [task])
            except EngineError:
                await self.cancel()  # what was queued would run unpaid: stop it
                raise
            for task, cost in zip(self.tasks, self.costs, strict=True):
                try:
                    result = await asyncio.wrap_future(task.future)
                except JobCancelled:
                    continue
                except EngineError as exc:
                    self.errors.append(exc)
                    continue
                admission.succeeded(images=1, credits=cost)
                done += 1
                outcome = on_result(result, cost)
                if asyncio.iscoroutine(outcome):
                    await outcome
        return done


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


async def remove_background(engine: ImageEngine, user: User, png: bytes, prompt: str = "") -> GenerationResult:
    image = await asyncio.to_thread(_decode, png)
    storage = await asyncio.to_thread(engine.storage_for, user)
    cost = BACKGROUND_REMOVAL_CREDITS
    async with metered(engine, user, credits=cost) as admission:
        # Loading the cut-out model can take a moment the first time: off the event loop.
        task = await asyncio.to_thread(engine.submit_background_removal, user, image, prompt=prompt,
                                       store=storage["store"], charge_id=admission.charge_id, cost=cost)
        result = await asyncio.wrap_future(task.future)
        admission.succeeded(images=1, credits=cost)
    return result


async def enhance_prompt(engine: ImageEngine, user: User, prompt: str, tone: str | None) -> EnhancedPrompt:
    """Prompt tools are free and outside the quotas, behind their own per-minute guard, as on the API."""
    loop = asyncio.get_running_loop()  # in the outbound pool: it may wait on a remote text model
    return await loop.run_in_executor(engine.outbound, engine.enhance_prompt, user.workspace_id, prompt, tone)
