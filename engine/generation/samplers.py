"""Samplers by their AUTOMATIC1111 names, as diffusers schedulers.

A1111 names a sampler ("DPM++ 2M", "Euler a") and, separately, a noise schedule ("Karras", "Exponential"; older
clients fold it into the sampler's name: "DPM++ 2M Karras"). Each maps to a diffusers scheduler class and the
options it is built with (``SchedulerClass.from_config(pipe.scheduler.config, **options)``), following the table
in diffusers' scheduler documentation. Only SD and SDXL pipelines take another sampler: FLUX models sample with
their flow-matching scheduler, and a model whose catalog entry pins a scheduler (LCM, Lightning) is distilled
for it, so both keep theirs and the request says so in a warning.

A per-request scheduler never touches the shared pipeline: ``with_sampler`` runs the call on a shallow copy
that shares every module (about 30 µs; diffusers' ``from_pipe`` takes about 10 ms, logs warnings per call and
drops the progress-bar setting), so the loaded pipeline keeps its own scheduler for every other call.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from dataclasses import dataclass, field

from engine.errors import InvalidRequest
from engine.generation.catalog import ModelSpec

# Families whose pipelines run the samplers below; FLUX (flow matching) keeps its own scheduler.
SAMPLER_FAMILIES = ("sd", "sdxl")

_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


@dataclass(frozen=True)
class Schedule:
    """A1111's "scheduler" (noise schedule): its name, its label, and the scheduler options it sets."""

    name: str
    label: str
    sigmas: str | None = None  # the one of _SIGMA_FLAGS it turns on; the others are turned off
    timestep_spacing: str | None = None

    def options(self, scheduler_class: str) -> dict:
        accepted = _init_parameters(scheduler_class)
        options = {flag: flag == self.sigmas for flag in _SIGMA_FLAGS if flag in accepted}
        if self.timestep_spacing:
            options["timestep_spacing"] = self.timestep_spacing
        return options

    def fits(self, scheduler_class: str) -> bool:
        accepted = _init_parameters(scheduler_class)
        return ((self.sigmas is None or self.sigmas in accepted)
                and (self.timestep_spacing is None or "timestep_spacing" in accepted))


# "automatic" is the sampler's own default; the others as A1111 1.10 names and labels them.
SCHEDULES: tuple[Schedule, ...] = (
    Schedule("automatic", "Automatic"),
    Schedule("uniform", "Uniform"),
    Schedule("karras", "Karras", sigmas="use_karras_sigmas"),
    Schedule("exponential", "Exponential", sigmas="use_exponential_sigmas"),
    Schedule("sgm_uniform", "SGM Uniform", timestep_spacing="trailing"),
    Schedule("beta", "Beta", sigmas="use_beta_sigmas"),
)
_SCHEDULES = {s.name: s for s in SCHEDULES}


@dataclass(frozen=True)
class Sampler:
    name: str
    aliases: tuple[str, ...]
    scheduler_class: str  # a diffusers scheduler
    options: dict = field(default_factory=dict)  # passed to from_config
    default_schedule: str = "uniform"  # what "automatic" means for this sampler in A1111 1.10
    # A1111 reads ``eta`` for ancestral samplers (default 1) and DDIM (default 0), and ``s_churn``/``s_noise``/
    # ``s_tmin``/``s_tmax`` for Euler, Heun and DPM2; the other samplers ignore them.
    eta_default: float | None = None
    uses_churn: bool = False

    def a1111_options(self) -> dict:
        """The ``options`` of ``GET /sdapi/v1/samplers``: A1111's, and the diffusers class that runs."""
        options: dict = {"diffusers_scheduler": self.scheduler_class}
        if self.default_schedule != "uniform":
            options["scheduler"] = self.default_schedule
        return options


# A1111 1.10's samplers that diffusers has (not: DPM++ 2S a, DPM++ SDE (needs torchsde), DPM++ 3M SDE, DPM fast,
# DPM adaptive, Restart, DDIM CFG++).
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", ("k_dpmpp_2m",), "DPMSolverMultistepScheduler", default_schedule="karras"),
    Sampler("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++"}, default_schedule="exponential"),
    Sampler("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}, default_schedule="exponential"),
    Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), "EulerAncestralDiscreteScheduler", eta_default=1.0),
    Sampler("Euler", ("k_euler",), "EulerDiscreteScheduler", uses_churn=True),
    Sampler("LMS", ("k_lms",), "LMSDiscreteScheduler"),
    Sampler("Heun", ("k_heun",), "HeunDiscreteScheduler", uses_churn=True),
    Sampler("DPM2", ("k_dpm_2",), "KDPM2DiscreteScheduler", default_schedule="karras", uses_churn=True),
    Sampler("DPM2 a", ("k_dpm_2_a",), "KDPM2AncestralDiscreteScheduler", default_schedule="karras",
            eta_default=1.0),
    Sampler("DDIM", ("ddim",), "DDIMScheduler", eta_default=0.0),
    Sampler("PLMS", ("plms",), "PNDMScheduler", {"skip_prk_steps": True}),
    Sampler("UniPC", ("unipc",), "UniPCMultistepScheduler"),
    Sampler("LCM", ("lcm",), "LCMScheduler"),
)


def _fold(name: str) -> str:
    return " ".join(name.lower().split())


_BY_NAME = {_fold(alias): s for s in SAMPLERS for alias in (s.name, *s.aliases)}
_SCHEDULE_BY_NAME = {_fold(key): s for s in SCHEDULES for key in (s.name, s.label)}


@dataclass(frozen=True)
class SamplerChoice:
    """What runs: the sampler, the schedule (never "automatic": resolved to the sampler's default)."""

    sampler: Sampler
    schedule: Schedule

    def build(self, base_scheduler):
        """A new scheduler of this choice, configured like ``base_scheduler`` (its betas, timesteps, prediction)."""
        from engine.generation.pipelines import diffusers_class

        cls = diffusers_class(self.sampler.scheduler_class)
        accepted = _init_parameters(self.sampler.scheduler_class)
        # Only what this class takes: from_config would log a warning for each key of another class's config.
        config = {key: value for key, value in dict(base_scheduler.config).items() if key in accepted}
        return cls.from_config(config, **self.sampler.options, **self.schedule.options(self.sampler.scheduler_class))


def find_sampler(sampler_name: str | None, schedule: str | None = None) -> SamplerChoice:
    """The sampler and schedule for A1111's ``sampler_name`` and ``scheduler`` fields; an unknown name, or a
    schedule the sampler can't run, is an InvalidRequest naming the field."""
    schedule_name = _fold(schedule or "automatic")
    sampler = _BY_NAME.get(_fold(sampler_name or ""))
    if sampler is None and sampler_name:
        # Older clients fold the schedule into the name: "DPM++ 2M Karras", "DPM2 a Karras".
        folded = _fold(sampler_name)
        for known in sorted(_SCHEDULE_BY_NAME, key=len, reverse=True):
            base = folded.removesuffix(" " + known)
            if base != folded and base in _BY_NAME:
                sampler = _BY_NAME[base]
                if schedule_name == "automatic":
                    schedule_name = known
                break
    if sampler is None:
        names = ", ".join(s.name for s in SAMPLERS)
        raise InvalidRequest(f"sampler '{sampler_name}' is not available on this server; use one of: {names} "
                             f"(and the schedule in `scheduler`, e.g. Karras)", field="sampler_name")
    found = _SCHEDULE_BY_NAME.get(schedule_name)
    if found is None:
        names = ", ".join(s.label for s in SCHEDULES)
        raise InvalidRequest(f"scheduler '{schedule}' is not available on this server; use one of: {names}",
                             field="scheduler")
    if found.name == "automatic":
        found = _SCHEDULES[sampler.default_schedule]
    if not found.fits(sampler.scheduler_class):
        raise InvalidRequest(f"sampler '{sampler.name}' cannot run the {found.label} schedule here "
                             f"({sampler.scheduler_class} has no such option)", field="scheduler")
    return SamplerChoice(sampler, found)


def choose_sampler(spec: ModelSpec, sampler_name: str | None, schedule: str | None
                   ) -> tuple[SamplerChoice | None, tuple[str, ...]]:
    """The sampler a request runs on ``spec`` (None: the model's own scheduler) and warnings for what was asked
    and not used. Unknown names raise even where the sampler would not apply, so a typo never passes."""
    explicit_schedule = _fold(schedule or "automatic") != "automatic"
    if sampler_name is None and not explicit_schedule:
        return None, ()
    # A schedule without a sampler: A1111 1.10's default sampler with it.
    choice = find_sampler(sampler_name or "DPM++ 2M", schedule)
    asked = f"sampler '{choice.sampler.name}'" + (f" with the {choice.schedule.label} schedule"
                                                  if explicit_schedule else "")
    if spec.family not in SAMPLER_FAMILIES:
        if choice.sampler.name == "Euler" and not explicit_schedule:  # what a flow-matching model runs anyway
            return None, ()
        return None, (f"{asked} was not used: {spec.name} samples with its own flow-matching scheduler",)
    if spec.scheduler is not None:
        if spec.scheduler == choice.sampler.scheduler_class and not explicit_schedule:
            return None, ()
        return None, (f"{asked} was not used: {spec.name} is distilled for its own {spec.scheduler}",)
    return choice, ()


def with_sampler(pipe, sampler_name: str, schedule: str):
    """``pipe`` for one call with this sampler: a shallow copy sharing every module, with a scheduler of its own.
    The loaded pipeline (and its edit and inpaint variants) keep their scheduler."""
    variant = copy.copy(pipe)
    # DiffusionPipeline.__setattr__ also records the class in the copy's config (a new dict, not the original's).
    variant.scheduler = find_sampler(sampler_name, schedule).build(pipe.scheduler)
    return variant


@functools.cache
def _init_parameters(scheduler_class: str) -> frozenset[str]:
    from engine.generation.pipelines import diffusers_class

    return frozenset(inspect.signature(diffusers_class(scheduler_class).__init__).parameters)


def replace_sampler(resolved, choice: SamplerChoice | None, warnings: tuple[str, ...]):
    """``ResolvedParams`` that run ``choice`` (its A1111 names, which ``run_pipeline`` reads back)."""
    return dataclasses.replace(resolved, sampler=choice.sampler.name if choice else None,
                               scheduler=choice.schedule.name if choice else None,
                               warnings=resolved.warnings + warnings)
