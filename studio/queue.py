"""The queue panel: the user's jobs from every tab (and from tabs since closed) with their place in line and state,
each with its own Cancel; an image that finishes elsewhere is handed to the page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from nicegui import ui

from engine.data.tables import JobStatus, utcnow
from engine.generation.activity import ActiveJob, active_jobs, recent_results, with_places
from engine.generation.jobs import GenerationResult
from engine.service import ImageEngine
from studio import auth
from studio.offload import off_loop

POLL_S = 1.5


def state_text(job: ActiveJob) -> str:
    if job.status == JobStatus.QUEUED:
        return "Queued, next in line" if job.ahead == 0 else f"Queued behind {job.ahead}"
    if not job.step:
        return "Loading the model…"
    return f"Step {job.step} of {job.total}"


def read_queue(engine: ImageEngine, user_id: str | None) -> tuple[list[ActiveJob], dict[str, str]]:
    """The jobs (``user_id`` None: everyone's) with their places, and their owners' emails for an admin's view."""
    jobs = with_places(engine, active_jobs(engine, user_id))
    return jobs, (engine.accounts.emails() if user_id is None else {})


def read_finished(engine: ImageEngine, user_id: str, since: datetime) -> tuple[list[GenerationResult], datetime]:
    """Images finished after ``since`` (oldest first), and the moment to ask from next time."""
    now = utcnow()
    return list(reversed(recent_results(engine, user_id, limit=12, since=since))), now


class QueuePanel:
    """``everyone``: the admin's view of every user's jobs (no results handed over); otherwise the user's own."""

    def __init__(self, engine: ImageEngine, guard: auth.Guard,
                 on_finished: Callable[[GenerationResult], None] | None = None, *, everyone: bool = False):
        self.engine = engine
        self.guard = guard
        self.on_finished = on_finished
        self.everyone = everyone
        self.since = utcnow()  # what finished before the page opened is in its recent results already
        self._reading = False
        with ui.column().classes("studio-card w-full gap-2 p-4").mark("queue").props("data-testid=queue") \
                as self.card:
            with ui.row().classes("w-full items-center gap-2"):
                ui.icon("queue", size="20px").classes("text-primary")
                ui.label("Every job on this server" if everyone else "Your queue").classes("font-semibold grow")
                self.summary = ui.label().classes("text-xs studio-muted").mark("queue-summary")
            self.rows = ui.column().classes("w-full gap-2")
        self.card.visible = everyone  # the admin's view stays, saying when nothing runs
        self.timer = ui.timer(POLL_S, self.refresh)

    async def refresh(self) -> None:
        if self._reading or self.rows.is_deleted:
            return
        self._reading = True  # a slow read is never doubled by the next tick
        try:
            jobs, emails = await off_loop(read_queue, self.engine, None if self.everyone else self.guard.user_id)
            if self.on_finished is not None:
                finished, self.since = await off_loop(read_finished, self.engine, self.guard.user_id, self.since)
                for result in finished:
                    if not self.rows.is_deleted:
                        self.on_finished(result)
        finally:
            self._reading = False
        if not self.rows.is_deleted:
            self._draw(jobs, emails)

    def _draw(self, jobs: list[ActiveJob], emails: dict[str, str]) -> None:
        self.card.visible = bool(jobs) or self.everyone
        running = sum(job.status == JobStatus.RUNNING for job in jobs)
        self.summary.text = f"{running} running · {len(jobs) - running} waiting" if jobs else "nothing running"
        self.rows.clear()
        with self.rows:
            for job in jobs:
                with ui.row().classes("w-full items-center gap-3 no-wrap").mark(f"queued-{job.job_id}"):
                    with ui.column().classes("gap-1 grow min-w-0"):
                        ui.label(job.prompt or job.job_id).classes("text-sm truncate")
                        owner = f"{emails.get(job.user_id, '?')} · " if self.everyone else ""
                        ui.label(f"{owner}{job.model} · {state_text(job)}").classes("text-xs studio-muted") \
                            .mark("queue-state")
                        value = job.step / job.total if job.total and job.status == JobStatus.RUNNING else 0
                        ui.linear_progress(value=value, show_value=False).props("rounded size=4px")
                    ui.button(icon="close", on_click=lambda j=job.job_id: self.cancel(j)) \
                        .props('flat round dense aria-label="Cancel this job" data-testid=queue-cancel') \
                        .mark(f"cancel-{job.job_id}") \
                        .tooltip("Cancel")

    async def cancel(self, job_id: str) -> None:
        if await self.guard.user() is None:
            return
        if await off_loop(self.engine.cancel_job, job_id):
            ui.notify("Cancelled.", type="info")
        await self.refresh()
