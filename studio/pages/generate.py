"""Generate (/): prompt, prompt builder and enhancer, model and settings, live progress, results."""

from __future__ import annotations

import io
import secrets

from nicegui import background_tasks, ui
from PIL import Image
from pydantic import ValidationError

from engine.billing.pricing import BACKGROUND_REMOVAL_CREDITS
from engine.data.tables import User
from engine.errors import EngineError, NotFound
from engine.generation.activity import recent_results
from engine.generation.catalog import UPSCALER_FACTOR, ModelSpec
from engine.generation.infotext import settings_of
from engine.generation.inputs import InputLimits, decode_image_bytes
from engine.generation.jobs import GenerationResult
from engine.generation.params import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEPS,
    UPSCALE_STRENGTH,
    GenerationParams,
    ResolvedParams,
    check_inputs,
    size_for_aspect,
    size_like,
    upscale_input,
)
from engine.generation.png import data_url, decoded
from engine.generation.samplers import SAMPLER_FAMILIES, SAMPLERS, SCHEDULES, choose_sampler, replace_sampler
from engine.service import ImageEngine
from engine.tools.prompts import DEFAULT_TONE, TONES, build_prompt
from studio import actions, auth
from studio.layout import card, frame
from studio.offload import off_loop
from studio.mask import MaskPainter
from studio.queue import QueuePanel
from studio.widgets import SIZE_CHOICES, ModelChoice, default_model, empty_state, model_choices, state_chip

BUILDER_FIELDS = (("subject", "Subject", "a red fox"), ("setting", "Setting", "a snowy birch forest"),
                  ("mood", "Mood", "serene"), ("art_style", "Art style", "watercolor"),
                  ("lighting", "Lighting", "soft golden hour"), ("camera", "Camera", "85mm lens"),
                  ("extras", "Extras", "highly detailed, comma separated"))
MAX_COUNT = 4


RECENT_RESULTS = 12  # shown again after a reload or a restart
DEFAULT_SAMPLER = ""  # the model's own scheduler
EDIT_KINDS = ("edit", "inpaint")  # results made from a picture: Reuse brings the picture back (not a painted mask)
DROP_ANYWHERE_JS = """<script>
(() => {
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    document.body.classList.add("studio-dropping");
  });
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) document.body.classList.remove("studio-dropping");
  });
  document.addEventListener("drop", (e) => {
    document.body.classList.remove("studio-dropping");
    if (!hasFiles(e) || !e.dataTransfer.files.length) return;
    e.preventDefault();
    const uploader = getElement(UPLOAD_ID);
    if (uploader) uploader.$refs.qRef.addFiles([e.dataTransfer.files[0]]);
  });
})();
</script>"""


def register(engine: ImageEngine) -> None:
    @ui.page("/", title="Image Studio")
    async def generate_page(reuse: str | None = None, upscale: str | None = None):
        user = await auth.require_user(engine, "/")
        if user is None:
            return
        choices = await off_loop(model_choices, engine)
        max_count = await off_loop(max_images, engine, user)
        can_cut_out = await off_loop(engine.can_remove_backgrounds)
        upscalers = await off_loop(engine.upscalers_here)
        recent = await off_loop(recent_results, engine, user.id, RECENT_RESULTS)  # a reload or restart loses none
        with frame(user, "/", "Generate", "Describe an image, pick a model, and make it."):
            page = GeneratePage(engine, user, choices, max_count, can_cut_out=can_cut_out, recent=recent,
                                upscalers=upscalers)
        if reuse:
            await page.reuse_stored(reuse)
        if upscale:
            await page.upscale_stored(upscale)


def max_images(engine: ImageEngine, user: User) -> int:
    """How many images one click may make: the plan's batch size and the server's cap (blocking: the database)."""
    try:
        _, plan = engine.meter.plan_of(user.workspace_id)
    except EngineError:
        return 1
    return max(1, min(MAX_COUNT, plan.max_batch_size, engine.runtime.get("max_batch_size")))


def prepare_all(engine: ImageEngine, planned: list[GenerationParams], sampler: str | None = None,
                schedule: str | None = None) -> list[ResolvedParams]:
    """Resolve each image's model (aliases, custom models) and check its inputs, with the sampler chosen (None:
    the model's own scheduler). Blocking: the database."""
    prepared = []
    for params in planned:
        resolved = engine.prepare(params)
        if sampler is not None:
            spec = engine.catalog.get(resolved.model)
            resolved = replace_sampler(resolved, *choose_sampler(spec, sampler, schedule))
        prepared.append(resolved)
    return prepared


def takes_samplers(spec: ModelSpec) -> bool:
    """Whether the model's pipeline runs the samplers of the list (FLUX and distilled models keep their own)."""
    return spec.family in SAMPLER_FAMILIES and spec.scheduler is None


def decode_upload(data: bytes) -> tuple[Image.Image, bytes]:
    """An uploaded picture, checked like the API's input images, and as a PNG for its preview (CPU-heavy for a
    big picture: call it off the loop)."""
    image = decode_image_bytes(data, InputLimits())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return image, buffer.getvalue()


class GeneratePage:
    def __init__(self, engine: ImageEngine, user: User, choices: list[ModelChoice], max_count: int, *,
                 can_cut_out: bool = True, recent: list[GenerationResult] | None = None,
                 upscalers: set[str] = frozenset()):
        """``choices``: ``model_choices(engine)``; ``max_count``: ``max_images(engine, user)``; ``can_cut_out``:
        whether background removal's model file is here; ``recent``: ``recent_results``; ``upscalers``:
        ``engine.upscalers_here()`` (all read off the loop)."""
        self.can_cut_out = can_cut_out
        self.upscalers = upscalers
        self.engine = engine
        self.guard = auth.Guard(engine, user)
        self.prefs = dict(user.preferences or {})
        self._saved_model_settings = self.prefs.get("model_settings")
        self.choices: dict[str, ModelChoice] = {c.spec.slug: c for c in choices}
        self.max_count = max_count
        self.run: actions.GenerationRun | None = None
        self.starting = False  # a click on Generate is being checked
        self.edit_image: Image.Image | None = None
        self.edit_source_id: str | None = None  # the gallery image being edited, recorded with the edit
        self.edit_png: bytes | None = None
        # This visit's edits: their source pictures, so that Reuse brings an edit back as an edit.
        self.edit_sources: dict[str, tuple[Image.Image, bytes, str | None]] = {}
        self.batch_jobs: set[str] = set()  # the jobs of the last run
        self.results: list[tuple[GenerationResult, int | None]] = [(result, None) for result in recent or []]
        with ui.element("div").classes("grid grid-cols-1 lg:grid-cols-[minmax(340px,420px)_1fr] gap-5 w-full"):
            with ui.column().classes("gap-5 w-full min-w-0"):
                self._build_prompt_card()
                self._build_settings_card()
            with ui.column().classes("gap-5 w-full min-w-0"):
                self.queue = QueuePanel(engine, self.guard, on_finished=self._arrived)
                self._build_progress()
                self.results_box = ui.column().classes("w-full gap-5").mark("results").props("data-testid=results")
        self.set_seed_lock(False)
        self._on_model_change()
        self._restore_draft(self.prefs.get("draft") or {})
        self.prompt.on("blur", self.save_draft)
        for field in (self.prompt, self.negative):  # Ctrl+Enter (⌘+Enter on a Mac) generates, as in other studios
            field.on("keydown.ctrl.enter", self.generate)
            field.on("keydown.meta.enter", self.generate)
        self._render_results()

    # -- layout ----------------------------------------------------------------------------------
    def _build_prompt_card(self) -> None:
        with card("Prompt", icon="edit_note"):
            # No maxlength: a browser cuts a longer paste without a word; the counter and a rule say it instead.
            self.prompt = ui.textarea(placeholder="a lighthouse at dusk, oil painting, dramatic sky",
                                      validation={f"At most {MAX_PROMPT_CHARS} characters":
                                                  lambda v: len(v or "") <= MAX_PROMPT_CHARS}) \
                .props("outlined autogrow counter").classes("w-full") \
                .mark("prompt").props("data-testid=prompt")
            with ui.expansion("Prompt builder", icon="construction").classes("w-full rounded-lg") \
                    .props("dense header-class='px-1 font-medium'").mark("builder").props("data-testid=builder"):
                self.builder: dict[str, ui.input] = {}
                with ui.element("div").classes("grid grid-cols-1 sm:grid-cols-2 gap-2 w-full pt-1"):
                    for name, label, hint in BUILDER_FIELDS:
                        self.builder[name] = ui.input(label, placeholder=hint).props("outlined dense") \
                            .classes("w-full").mark(f"builder-{name}").props(f"data-testid=builder-{name}")
                ui.button("Use as prompt", icon="arrow_upward", on_click=self.apply_builder) \
                    .props("flat no-caps").classes("mt-1").mark("builder-apply")
            with ui.row().classes("w-full items-center gap-2 no-wrap"):
                self.tone = ui.select({name: name.capitalize() for name in TONES}, value=DEFAULT_TONE,
                                      label="Tone").props("outlined dense options-dense").classes("grow") \
                    .mark("tone")
                self.enhance_button = ui.button("Enhance", icon="auto_fix_high", on_click=self.enhance) \
                    .props("unelevated no-caps color=secondary").mark("enhance").props("data-testid=enhance")
            self.negative = ui.textarea("Negative prompt", placeholder="blurry, low quality, watermark") \
                .props("outlined autogrow dense maxlength=1000").classes("w-full").mark("negative-prompt")

    def _build_settings_card(self) -> None:
        with card("Settings", icon="tune"):
            options = {slug: c.label for slug, c in self.choices.items()}
            start = default_model(self.engine, list(self.choices.values()), self.prefs.get("default_model"))
            self.model = ui.select(options, value=start, label="Model", on_change=self._on_model_change) \
                .props("outlined options-dense").classes("w-full").mark("model").props("data-testid=model")
            # Unavailable models are listed (with why) but can't be picked.
            self.model.props(''':option-disable="(opt) => String(opt.label).endsWith('· unavailable')"''')
            with ui.row().classes("w-full items-start gap-2 no-wrap -mt-1"):
                self.model_chip_box = ui.row().classes("shrink-0")
                self.model_info = ui.label().classes("text-xs studio-muted grow").mark("model-status")
                ui.button("All models", on_click=self._models_dialog).props("flat dense no-caps size=sm") \
                    .classes("shrink-0 -mt-1").mark("all-models")
            with ui.row().classes("w-full gap-2 no-wrap"):
                size = self.prefs.get("default_size", "1:1")
                self.size = ui.select(SIZE_CHOICES, value=size if size in SIZE_CHOICES else "1:1", label="Size",
                                      on_change=self._on_size_change).props("outlined options-dense") \
                    .classes("grow").mark("size").props("data-testid=size")
                self.count = ui.select(list(range(1, self.max_count + 1)), value=1, label="Images") \
                    .props("outlined").classes("w-28").mark("count")
            with ui.row().classes("w-full gap-2 no-wrap") as self.custom_size:
                self.width = ui.number("Width", value=512, min=256, max=1024, step=64,
                                       on_change=self._on_size_change) \
                    .props("outlined dense suffix=px data-testid=width").classes("grow").mark("width")
                self.height = ui.number("Height", value=512, min=256, max=1024, step=64,
                                        on_change=self._on_size_change) \
                    .props("outlined dense suffix=px data-testid=height").classes("grow").mark("height")
            self.size_hint = ui.label().classes("text-xs studio-muted -mt-1").mark("size-hint")
            with ui.row().classes("w-full gap-2 no-wrap items-start"):
                self.steps = ui.number("Steps", min=1, max=MAX_STEPS, step=1, precision=0).props("outlined dense") \
                    .classes("w-24").mark("steps").props("data-testid=steps")
                self.seed_locked = False
                self._seed_from_code = False  # the page sets the field (reuse, dice): not a user's typing
                self.seed = ui.number("Seed", placeholder="random", min=0, max=MAX_SEED, step=1, precision=0,
                                      on_change=self._on_seed_change) \
                    .props("outlined dense clearable data-testid=seed").classes("grow").mark("seed")
                self.lock_button = ui.button(icon="lock_open", on_click=self.toggle_seed_lock) \
                    .props('flat round aria-label="Lock the seed"').classes("mt-1").mark("seed-lock")
                self.lock_button.tooltip("Lock the seed: the same seed for the next images")
                ui.button(icon="casino", on_click=self.random_seed) \
                    .props('flat round aria-label="Random seed"').classes("mt-1") \
                    .mark("seed-random").tooltip("A new random seed (locked)")
            with ui.row().classes("w-full gap-2 no-wrap items-start"):
                self.guidance = ui.number("Guidance (CFG)", min=0, max=30, step=0.5, precision=1) \
                    .props("outlined dense").classes("w-32").mark("guidance")
                self.sampler = ui.select({DEFAULT_SAMPLER: "Model's own", **{s.name: s.name for s in SAMPLERS}},
                                         value=DEFAULT_SAMPLER, label="Sampler") \
                    .props("outlined dense options-dense").classes("grow").mark("sampler")
                self.schedule = ui.select({s.name: s.label for s in SCHEDULES}, value="automatic",
                                          label="Schedule").props("outlined dense options-dense") \
                    .classes("w-32").mark("schedule")
            self.sampler_hint = ui.label().classes("text-xs studio-muted -mt-1").mark("sampler-hint")
            self.last_seed = ui.label().classes("text-xs studio-muted -mt-1").mark("last-seed")
            self.last_seed.visible = False
            with ui.column().classes("w-full gap-2") as self.edit_panel:
                ui.separator()
                with ui.row().classes("w-full items-center gap-3 no-wrap"):
                    self.edit_preview = ui.image().classes("w-20 h-20 rounded-lg shrink-0").mark("edit-source") \
                        .props("data-testid=edit-source")
                    with ui.column().classes("gap-0 grow min-w-0"):
                        ui.label("Editing an image").classes("font-medium")
                        ui.label("The prompt describes the change. Lower strength keeps more of the original.") \
                            .classes("text-xs studio-muted")
                    ui.button(icon="close", on_click=self.clear_edit) \
                        .props('flat round dense aria-label="Stop editing" data-testid=clear-edit').mark("clear-edit") \
                        .tooltip("Stop editing")
                self.paint_mask = ui.switch("Paint a mask (inpaint)", on_change=self._on_paint_toggle) \
                    .mark("paint-mask").props("data-testid=paint-mask")
                self.painter = MaskPainter()
                with ui.row().classes("w-full items-center gap-3 no-wrap"):
                    ui.label("Strength").classes("text-sm shrink-0").mark("strength-label")
                    self.strength = ui.slider(min=0.1, max=1.0, step=0.05, value=0.6) \
                        .props('label aria-label="Edit strength: how much the edit may change the image"') \
                        .classes("grow").mark("strength")
                    ui.label().bind_text_from(self.strength, "value", lambda v: f"{v:.2f}") \
                        .classes("text-sm font-mono w-10 text-right").mark("strength-value")
                with ui.row().classes("w-full items-center gap-2 no-wrap rounded-lg p-2 bg-primary/10") \
                        as self.found_settings:
                    ui.icon("info", color="primary")
                    self.found_settings_text = ui.label().classes("text-xs grow").mark("found-settings")
                    ui.button("Load its settings", on_click=self.load_found_settings) \
                        .props("flat dense no-caps size=sm data-testid=load-settings").mark("load-settings")
                self.found_settings.visible = False
            self.edit_panel.visible = False
            self.settings_found: dict | None = None
            # The uploader itself stays hidden; a plain button opens its file picker.
            upload = ui.upload(auto_upload=True, max_files=1, max_file_size=InputLimits.max_bytes,
                               on_upload=self._on_upload).props("accept=image/*").classes("hidden").mark("upload")
            # A picture dropped anywhere on the page goes to that uploader (and so to _on_upload).
            ui.add_body_html(DROP_ANYWHERE_JS.replace("UPLOAD_ID", str(upload.id)))
            with ui.row().classes("w-full gap-2 no-wrap"):
                ui.button(icon="add_photo_alternate", on_click=lambda: upload.run_method("pickFiles")) \
                    .props('outline size=lg aria-label="Edit an image of your own"').mark("upload-button") \
                    .tooltip("Edit an image of your own")
                self.generate_button = ui.button("Generate", icon="auto_awesome", on_click=self.generate) \
                    .props("unelevated size=lg no-caps").classes("grow").mark("generate").props("data-testid=generate")

    def _build_progress(self) -> None:
        with card(classes="gap-2") as self.progress_card:
            with ui.row().classes("w-full items-center no-wrap gap-3"):
                ui.spinner(size="22px", color="primary")
                self.status = ui.label("Queued…").classes("grow font-medium").mark("status").props("data-testid=status")
                ui.button("Cancel", icon="stop", on_click=self.cancel).props("flat no-caps color=negative") \
                    .mark("cancel")
            self.progress_bar = ui.linear_progress(value=0, show_value=False).props("rounded size=8px") \
                .mark("progress")
            self.preview = ui.image().classes("w-full max-w-md rounded-lg self-center").mark("preview")
            self.preview.visible = False
        self.progress_card.visible = False

    # -- model, size and seed --------------------------------------------------------------------
    def choice(self) -> ModelChoice:
        return self.choices[self.model.value]

    async def _models_dialog(self) -> None:
        """Every model with its state, and why the unavailable ones can't run here."""
        choices = await off_loop(model_choices, self.engine)  # now, not at page load: models load and unload
        with ui.dialog() as dialog, ui.card().classes("w-full max-w-2xl p-5 gap-3").mark("models-dialog"):
            with ui.row().classes("w-full items-center no-wrap"):
                ui.label("Models on this server").classes("text-lg font-semibold grow")
                ui.button(icon="close", on_click=dialog.close).props('flat round dense aria-label="Close"')
            for choice in choices:
                with ui.row().classes("w-full items-start gap-3 no-wrap"):
                    with ui.column().classes("gap-0 grow min-w-0"):
                        ui.label(f"{choice.spec.name}").classes("font-medium")
                        ui.label(choice.reason or choice.spec.description).classes("text-xs studio-muted")
                    state_chip(choice.state)
        dialog.on("hide", dialog.delete)  # built afresh each time it opens
        dialog.open()

    def _on_model_change(self, _=None) -> None:
        choice = self.choice()
        self.model_chip_box.clear()
        with self.model_chip_box:
            state_chip(choice.state)
        self.model_info.text = choice.reason or choice.spec.description
        self.steps.value = choice.spec.default_steps
        self._apply_model_settings(choice.spec)
        self.negative.enabled = choice.spec.supports_negative
        if choice.spec.supports_negative:
            self.negative.props(remove="hint")
        else:
            self.negative.props('hint="This model ignores negative prompts"')
        self.generate_button.enabled = choice.usable
        self._on_size_change()

    # -- guidance and sampler, remembered per model ------------------------------------------------------------
    def chosen_guidance(self) -> float | None:
        spec = self.choice().spec
        if not spec.uses_guidance or self.guidance.value is None:
            return None
        value = float(self.guidance.value)
        return None if value == spec.default_guidance else max(0.0, min(30.0, value))

    def chosen_sampler(self) -> tuple[str | None, str | None]:
        if not takes_samplers(self.choice().spec) or self.sampler.value == DEFAULT_SAMPLER:
            return None, None
        return self.sampler.value, self.schedule.value

    def remember_model_settings(self) -> None:
        """What was set for this model comes back the next time it is picked (saved with the draft)."""
        remembered = dict(self.prefs.get("model_settings") or {})
        remembered[self.model.value] = {"guidance": self.guidance.value, "sampler": self.sampler.value,
                                        "schedule": self.schedule.value, "steps": self.steps.value}
        self.prefs["model_settings"] = dict(list(remembered.items())[-20:])  # the last twenty models

    def _apply_model_settings(self, spec: ModelSpec) -> None:
        saved = (self.prefs.get("model_settings") or {}).get(spec.slug) or {}
        self.guidance.value = saved.get("guidance", spec.default_guidance)
        self.guidance.enabled = spec.uses_guidance
        if spec.uses_guidance:
            self.guidance.props(remove="hint")
        else:
            self.guidance.props('hint="Distilled: not used"')
        samplers = takes_samplers(spec)
        self.sampler.value = saved.get("sampler", DEFAULT_SAMPLER) if samplers else DEFAULT_SAMPLER
        self.schedule.value = saved.get("schedule", "automatic") if samplers else "automatic"
        self.sampler.enabled = self.schedule.enabled = samplers
        if samplers:
            self.sampler_hint.text = ""
        elif spec.scheduler:
            self.sampler_hint.text = f"{spec.name} is distilled for its own {spec.scheduler}"
        else:
            self.sampler_hint.text = f"{spec.name} samples with its own flow-matching scheduler"
        if isinstance(saved.get("steps"), (int, float)):
            self.steps.value = saved["steps"]

    def _on_size_change(self, _=None) -> None:
        """The size that will run: the model rounds to its multiples and limits, and the hint says so."""
        self.custom_size.visible = self.size.value == "custom"
        spec = self.choice().spec
        try:
            asked = self.dimensions()
            runs = check_inputs(GenerationParams(prompt="size", width=asked[0], height=asked[1]), spec)
        except (EngineError, ValidationError, TypeError, ValueError):
            self.size_hint.text = ("Width and height: 256 to 1024 px" if self.size.value == "custom" else "")
            return
        width, height = runs.width, runs.height
        if (width, height) == tuple(asked):
            self.size_hint.text = f"{width} × {height} px"
        else:
            self.size_hint.text = (f"{width} × {height} px: {spec.name} takes multiples of {spec.size_multiple} "
                                   f"from {spec.min_size} to {spec.max_size} (asked {asked[0]} × {asked[1]})")

    def dimensions(self) -> tuple[int, int]:
        spec = self.choice().spec
        if self.size.value == "custom":
            return int(self.width.value), int(self.height.value)
        if self.edit_image is not None and self.size.value == "1:1":
            return size_like(spec, *self.edit_image.size)  # an edit keeps the picture's shape by default
        return size_for_aspect(spec, self.size.value)

    def toggle_seed_lock(self) -> None:
        self.set_seed_lock(not self.seed_locked)

    def set_seed_lock(self, locked: bool) -> None:
        self.seed_locked = locked
        self.lock_button.props(f"icon={'lock' if locked else 'lock_open'} "
                               f"color={'primary' if locked else 'grey'}")

    def set_seed(self, seed: int | None) -> None:
        self._seed_from_code = True
        try:
            self.seed.value = seed
        finally:
            self._seed_from_code = False

    def _on_seed_change(self, event) -> None:
        """A seed typed in is the seed to use: typing it locks it; clearing the field unlocks."""
        if self._seed_from_code:
            return
        self.set_seed_lock(event.value is not None)

    def random_seed(self) -> None:
        self.set_seed(secrets.randbelow(MAX_SEED + 1))
        self.set_seed_lock(True)

    # -- prompt tools ----------------------------------------------------------------------------
    def builder_values(self) -> dict[str, str]:
        return {name: (field.value or "").strip() for name, field in self.builder.items()}

    def apply_builder(self) -> bool:
        values = self.builder_values()
        if not any(values.values()):
            ui.notify("Fill in at least one builder field, e.g. the subject.", type="warning")
            return False
        extras = [part.strip() for part in values.pop("extras").split(",") if part.strip()]
        try:
            self.prompt.value = build_prompt(**values, extras=extras or None)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return False
        return True

    async def enhance(self) -> None:
        user = await self.guard.user()
        if user is None:
            return
        if not (self.prompt.value or "").strip() and not self.apply_builder():
            return
        self.enhance_button.props("loading")
        try:
            result = await actions.enhance_prompt(self.engine, user, self.prompt.value, self.tone.value)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        finally:
            self.enhance_button.props(remove="loading")
        self.prompt.value = result.prompt
        note = f" ({result.fallback_reason})" if result.fallback_reason else ""
        ui.notify(f"Prompt enhanced in a {result.tone} tone{note}.", type="positive")

    # -- editing ---------------------------------------------------------------------------------
    def start_edit(self, image: Image.Image, png: bytes, source_image_id: str | None = None) -> None:
        """Edit ``image`` (``png`` is the same picture, for the preview; ``source_image_id`` its gallery id)."""
        self.found_settings.visible = False
        if self.choice().spec.edit_pipeline_class is None:
            ui.notify("This model can't edit images; pick another one.", type="warning")
        self.edit_image, self.edit_png, self.edit_source_id = image, png, source_image_id
        self.paint_mask.value = False
        self.painter.hide()
        self.edit_preview.set_source(data_url(png))
        self.edit_panel.visible = True
        self.generate_button.text = "Edit image"
        self.generate_button.props("icon=brush")
        self._on_size_change()

    def _on_paint_toggle(self, event) -> None:
        if event.value and self.edit_image is not None:
            self.painter.show(data_url(self.edit_png), self.edit_image.size)
            if self.choice().spec.inpaint_pipeline_class is None:
                ui.notify(f"{self.choice().spec.name} has no inpainting pipeline: pick an SD, SDXL or FLUX.1 model.",
                          type="warning")
        else:
            self.painter.hide()

    def clear_edit(self) -> None:
        self.edit_image = self.edit_png = self.edit_source_id = None
        self.paint_mask.value = False
        self.painter.hide()
        self.found_settings.visible = False
        self.edit_panel.visible = False
        self.generate_button.text = "Generate"
        self.generate_button.props("icon=auto_awesome")
        self._on_size_change()

    async def _on_upload(self, event) -> None:
        """A picture picked or dropped anywhere on the page: to edit; and if it carries generation settings (ours,
        or AUTOMATIC1111's), an offer to load them."""
        data = await event.file.read()
        try:
            image, png = await off_loop(decode_upload, data)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        finally:
            event.sender.reset()
        self.start_edit(image, png)
        self.settings_found = settings_of(image)
        self.found_settings.visible = self.settings_found is not None
        if self.settings_found:
            made_by = "this studio" if self.settings_found["source"] == "image-studio" else "AUTOMATIC1111"
            self.found_settings_text.text = (f"Made with {made_by}: "
                                             f"“{self.settings_found['prompt'][:80]}”")

    def load_found_settings(self) -> None:
        found = self.settings_found or {}
        self.prompt.value = found.get("prompt", self.prompt.value)
        self.negative.value = found.get("negative_prompt", "")
        if found.get("model") in self.choices and self.choices[found["model"]].usable:
            self.model.value = found["model"]  # resets the model's settings: the picture's come after
        if found.get("width") and found.get("height"):
            self.size.value = "custom"
            self.width.value, self.height.value = found["width"], found["height"]
        if isinstance(found.get("steps"), int):
            self.steps.value = max(1, min(MAX_STEPS, found["steps"]))
        if isinstance(found.get("guidance_scale"), (int, float)):
            self.guidance.value = found["guidance_scale"]
        if takes_samplers(self.choice().spec) and found.get("sampler") in {s.name for s in SAMPLERS}:
            self.sampler.value = found["sampler"]
            if found.get("scheduler") in {s.name for s in SCHEDULES}:
                self.schedule.value = found["scheduler"]
        if isinstance(found.get("seed"), int):
            self.set_seed(found["seed"])
            self.set_seed_lock(True)
        self._on_size_change()
        self.found_settings.visible = False
        ui.notify("The picture's settings are loaded; the seed is locked.", type="positive")

    # -- generating ------------------------------------------------------------------------------
    async def _planned_run(self) -> actions.GenerationRun | None:
        """The run the form asks for, or None after saying why not (or when the user is signed out)."""
        user = await self.guard.user()
        if user is None:
            return None
        if not (self.prompt.value or "").strip():
            ui.notify("Write a prompt first, or use the prompt builder.", type="warning")
            return None
        if len(self.prompt.value) > MAX_PROMPT_CHARS:
            ui.notify(f"The prompt is {len(self.prompt.value):,} characters; at most {MAX_PROMPT_CHARS:,} are used. "
                      "Shorten it.", type="warning")
            return None
        try:
            planned = self.planned_params()
            # The form is read here, on the loop.
            init_image, strength, source = self.edit_image, float(self.strength.value), self.edit_source_id
            mask = self.painter.mask() if init_image is not None else None
            sampler, schedule = self.chosen_sampler()
            self.remember_model_settings()
            # Resolving the model (aliases, custom models) and pricing it read the database: off the loop.
            return await off_loop(lambda: actions.GenerationRun(
                self.engine, user, prepare_all(self.engine, planned, sampler, schedule), init_image=init_image,
                strength=strength, source_image_id=source, mask=mask))
        except ValidationError as exc:
            error = exc.errors()[0]
            ui.notify(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", type="negative")
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
        return None

    def planned_params(self) -> list[GenerationParams]:
        """Parameters for every image, checked as a request is (a ValidationError to show); not yet resolved:
        ``prepare_all`` (off the loop) resolves the model and checks them against it (an EngineError)."""
        width, height = self.dimensions()
        seed = None if self.seed.value is None else int(self.seed.value)
        if self.seed_locked and seed is None:
            seed = secrets.randbelow(MAX_SEED + 1)
            self.set_seed(seed)
        steps = None
        if self.steps.value is not None:  # the field shows its limits at once; the run uses what it shows
            steps = max(1, min(MAX_STEPS, int(self.steps.value)))
            self.steps.value = steps
        planned = []
        for image_seed in actions.seeds_for(int(self.count.value or 1), seed, self.seed_locked):
            params = GenerationParams(prompt=self.prompt.value or "", negative_prompt=self.negative.value or None,
                                      model=self.model.value, width=width, height=height, steps=steps,
                                      seed=image_seed, guidance_scale=self.chosen_guidance())
            planned.append(params)
        return planned

    async def generate(self) -> None:
        if self.run is not None or self.starting:
            return
        self.starting = True  # a second click while this one is still being checked starts nothing
        try:
            run = await self._planned_run()
        finally:
            self.starting = False
        if run is None:
            return
        background_tasks.create(self.save_draft())
        await self._execute(run)

    async def upscale_stored(self, image_id: str) -> None:
        """/?upscale=img_… from the gallery: the user's own stored image, upscaled here."""
        try:
            record = await off_loop(self.engine.gallery.get, image_id, self.guard.user_id)
            png = await off_loop(self.engine.gallery.read, record)
        except NotFound:
            ui.notify("That image is not in your gallery.", type="warning")
            return
        params = ResolvedParams(prompt=record.prompt, negative_prompt=record.negative_prompt, model=record.model,
                                width=record.width, height=record.height, steps=record.steps,
                                guidance_scale=record.guidance_scale, seed=record.seed)
        await self.upscale(GenerationResult(job_id=record.job_id or "", image_id=record.id, params=params, png=png,
                                            stored=True, duration_ms=record.duration_ms, kind=record.kind))

    def x4_upscaler(self, result: GenerationResult) -> ModelSpec | None:
        """The diffusers x4 upscaler for this result, where its weights are here and the result is small enough."""
        choice = self.choices.get(result.params.model)
        if choice is None or result.kind == "remove_background":
            return None
        upscaler = self.engine.catalog.upscaler_for(choice.spec)
        fits = max(result.params.width, result.params.height) * UPSCALER_FACTOR <= upscaler.max_size
        return upscaler if upscaler.slug in self.upscalers and fits else None

    async def upscale(self, result: GenerationResult, x4: bool = False) -> None:
        """Twice the size: a Lanczos resize, then a low-strength pass of the same model, prompt and seed. ``x4``:
        four times the size through the diffusers x4 upscaler."""
        if self.run is not None or self.starting:
            return
        user = await self.guard.user()
        if user is None:
            return
        self.starting = True
        try:
            def plan() -> actions.GenerationRun:
                if x4:
                    return actions.GenerationRun(self.engine, user, [self.engine.x4_upscale_params(result.params)],
                                                 init_image=decoded(result.png),
                                                 source_image_id=result.image_id if result.stored else None,
                                                 kind="upscale")
                bigger = self.engine.upscale_params(result.params)
                start = upscale_input(decoded(result.png), bigger)
                return actions.GenerationRun(self.engine, user, [bigger], init_image=start, strength=UPSCALE_STRENGTH,
                                             source_image_id=result.image_id if result.stored else None,
                                             kind="upscale")

            run = await off_loop(plan)
        except EngineError as exc:
            ui.notify(exc.message, type="warning")
            return
        finally:
            self.starting = False
        await self._execute(run)

    async def _execute(self, run: actions.GenerationRun) -> None:
        self.run = run
        self.batch_jobs = set()  # filled as the run's images arrive: they are shown side by side
        self._set_busy(True)
        timer = ui.timer(0.1, self._show_progress)
        try:
            done = await self.run.run(self._add_result)
        except EngineError as exc:
            ui.notify(exc.message, type="negative", multi_line=True)
            return
        finally:
            timer.cancel()
            cancelled, errors = self.run.cancelled, self.run.errors
            self.run = None
            if not self.closed:
                self._set_busy(False)
        if self.closed:
            return
        self.prompt.run_method("focus")  # the keyboard stays where the next prompt is typed
        if not self.seed_locked and done:
            # Unlocked, the field stays empty (the next run is random again); the seed used is shown beside it.
            self.last_seed.text = f"Last seed {self.results[0][0].params.seed}: lock it to reuse it"
            self.last_seed.visible = True
        if errors:
            ui.notify(errors[0].message, type="negative", multi_line=True)
        elif cancelled:
            ui.notify("Cancelled.", type="info")

    async def cancel(self) -> None:
        if self.run is not None:
            self.status.text = "Cancelling…"
            await self.run.cancel()

    def _set_busy(self, busy: bool) -> None:
        self.progress_card.visible = busy
        self.generate_button.enabled = not busy and self.choice().usable
        self.preview.visible = False
        self.progress_bar.value = 0
        self.status.text = "Queued…"

    def _show_progress(self) -> None:
        if self.run is None:
            return
        progress = self.run.progress()
        self.progress_bar.value = progress.fraction
        if progress.label():
            self.status.text = progress.label()
        elif not self.run.cancelled:
            self.status.text = "Loading the model…" if progress.finished == 0 else (
                f"Image {progress.finished + 1} of {progress.count} · Queued…")
        if progress.preview:
            self.preview.set_source(data_url(progress.preview))
            self.preview.visible = True

    @property
    def closed(self) -> bool:
        """The browser left the page: a run goes on to the end (and is charged right), nothing is drawn."""
        return self.results_box.is_deleted

    def _add_result(self, result: GenerationResult, credits: int) -> None:
        if result.kind in EDIT_KINDS and self.edit_image is not None:
            self.edit_sources[result.image_id] = (self.edit_image, self.edit_png, self.edit_source_id)
        if self.run is not None and any(task.id == result.job_id for task in self.run.tasks):
            self.batch_jobs.add(result.job_id)
        self.results.insert(0, (result, credits))
        del self.results[12:]  # the gallery keeps the rest; the page stays light
        if not self.closed:
            self._render_results()

    # -- results ---------------------------------------------------------------------------------
    def _render_results(self) -> None:
        """The newest image large with its actions; earlier ones of this visit as tiles that bring it back up."""
        self.results_box.clear()
        with self.results_box:
            if not self.results:
                with card():
                    empty_state("auto_awesome", "Your images appear here",
                                "Write a prompt, or open the prompt builder for a head start, then press Generate.")
                return
            # The images of the last run side by side, to compare; one image large.
            batch = 0
            while batch < len(self.results) and self.results[batch][0].job_id in self.batch_jobs:
                batch += 1
            if batch > 1:
                with ui.element("div").classes("grid grid-cols-1 sm:grid-cols-2 gap-4 w-full").mark("batch-grid"):
                    for result, credits in self.results[:batch]:
                        self._result_card(result, credits)
            else:
                batch = 1
                self._result_card(*self.results[0])
            if len(self.results) > batch:
                ui.label("Earlier").classes("text-sm font-semibold studio-muted -mb-2")
                with ui.element("div").classes("grid grid-cols-3 md:grid-cols-4 xl:grid-cols-6 gap-3 w-full"):
                    for index, (result, _) in enumerate(self.results[batch:], start=batch):
                        with ui.element("div").classes("studio-card studio-thumb overflow-hidden cursor-pointer") \
                                .on("click", lambda i=index: self._bring_up(i)).mark("earlier-result") \
                                .props("data-testid=earlier-result"):
                            ui.image(data_url(result.png)).props("ratio=1 fit=cover").classes("w-full")

    def _arrived(self, result: GenerationResult) -> None:
        """A job that left the queue finished elsewhere (another tab, a closed one): its image joins the results."""
        if self.run is not None and any(task.id == result.job_id for task in self.run.tasks):
            return  # this tab's run shows its own results
        if any(known.job_id == result.job_id for known, _ in self.results):
            return
        self._add_result(result, None)

    # -- the draft: the form, kept in the user's preferences (the database), not the browser ------------------
    def draft(self) -> dict:
        return {"prompt": self.prompt.value or "", "negative_prompt": self.negative.value or "",
                "model": self.model.value, "size": self.size.value, "width": self.width.value,
                "height": self.height.value, "steps": self.steps.value, "count": self.count.value,
                "seed": self.seed.value if self.seed_locked else None}

    async def save_draft(self, _=None) -> None:
        draft = self.draft()
        if draft == self.prefs.get("draft") and self.prefs.get("model_settings") == self._saved_model_settings:
            return
        self.prefs["draft"] = draft
        self._saved_model_settings = self.prefs.get("model_settings")
        await off_loop(self.engine.accounts.set_preferences, self.guard.user_id, draft=draft,
                       model_settings=self.prefs.get("model_settings") or {})

    def _restore_draft(self, draft: dict) -> None:
        if draft.get("model") in self.choices and self.choices[draft["model"]].usable:
            self.model.value = draft["model"]
        if draft.get("size") in SIZE_CHOICES:
            self.size.value = draft["size"]
        for field, key in ((self.width, "width"), (self.height, "height"), (self.steps, "steps")):
            if isinstance(draft.get(key), (int, float)):
                field.value = draft[key]
        if draft.get("count") in range(1, self.max_count + 1):
            self.count.value = draft["count"]
        self.prompt.value = str(draft.get("prompt") or "")
        self.negative.value = str(draft.get("negative_prompt") or "")
        if isinstance(draft.get("seed"), int):
            self.set_seed(draft["seed"])
            self.set_seed_lock(True)
        self._on_size_change()

    def _bring_up(self, index: int) -> None:
        self.batch_jobs = set()  # one picture brought up: shown large, alone
        self.results.insert(0, self.results.pop(index))
        self._render_results()

    def _result_card(self, result: GenerationResult, credits: int) -> None:
        p = result.params
        transparent = result.kind == "remove_background"
        with ui.column().classes("studio-card w-full gap-0 overflow-hidden").mark("result"):
            ui.image(data_url(result.png)).classes("w-full" + (" studio-checker" if transparent else "")) \
                .props("fit=contain").mark("result-image").props("data-testid=result-image")
            with ui.column().classes("w-full gap-2 p-4"):
                ui.label(p.prompt).classes("text-sm line-clamp-2")
                details = [p.model, f"{p.width}×{p.height}", f"seed {p.seed}", f"{p.steps} steps",
                           f"{result.duration_ms} ms"]
                if credits is not None:  # known for this visit's results
                    details.append(f"{credits} credit{'s' if credits != 1 else ''}")
                if result.kind != "generate":
                    details.insert(0, result.kind.replace("_", " "))
                details.append("saved to gallery" if result.stored else "not stored")
                ui.label(" · ".join(details)).classes("text-xs studio-muted").mark("result-details") \
                    .props("data-testid=result-details")
                with ui.row().classes("gap-1 flex-wrap"):
                    buttons = [("download", "Download", lambda: ui.download.content(
                                   result.png, f"{result.image_id}.png", "image/png"), "download"),
                               ("tag", "Copy seed", lambda: self._copy_seed(p.seed), "copy-seed")]
                    if not transparent:
                        buttons.append(("replay", "Reuse settings", lambda: self.reuse_result(result), "reuse"))
                        buttons.append(("zoom_out_map", "Upscale ×2", lambda: self.upscale(result), "upscale"))
                    if self.x4_upscaler(result) is not None:
                        buttons.append(("open_in_full", "Upscale ×4", lambda: self.upscale(result, x4=True),
                                        "upscale-x4"))
                    if not transparent and self.can_cut_out:  # offered only where its model file is
                        buttons.append(("content_cut", "Remove background", lambda: self.remove_background(result),
                                        "remove-bg"))
                    buttons.append(("brush", "Send to edit", lambda: self.send_to_edit(result), "edit"))
                    for icon, label, handler, marker in buttons:
                        ui.button(label, icon=icon, on_click=handler).props("flat dense no-caps size=sm") \
                            .mark(marker).props(f"data-testid={marker}")

    @staticmethod
    def _copy_seed(seed: int) -> None:
        ui.clipboard.write(str(seed))
        ui.notify(f"Seed {seed} copied.")

    def reuse(self, params: ResolvedParams | dict) -> None:
        p = params if isinstance(params, dict) else params.as_dict()
        self.prompt.value = p["prompt"]
        self.negative.value = p.get("negative_prompt") or ""
        if p["model"] in self.choices:
            self.model.value = p["model"]  # resets steps to the model's default: set steps after
        self.size.value = "custom"
        self.width.value, self.height.value = p["width"], p["height"]
        self.steps.value = p["steps"] or self.choice().spec.default_steps  # a cut-out has 0 steps
        self.set_seed(p["seed"])
        self.set_seed_lock(True)
        self._on_size_change()
        ui.notify("Settings loaded; the seed is locked.")

    def reuse_result(self, result: GenerationResult) -> None:
        """Reuse a result of this visit; an edit comes back as an edit of the same picture at the same strength."""
        self.reuse(result.params)
        if result.kind not in EDIT_KINDS:
            self.clear_edit()
            return
        source = self.edit_sources.get(result.image_id)
        if source is None and result.source_image_id:  # read from the gallery, off the loop
            background_tasks.create(self._restore_gallery_edit(result.source_image_id, result.strength))
            return
        self._restore_edit(source, result.strength)

    async def _restore_gallery_edit(self, image_id: str, strength: float | None) -> None:
        self._restore_edit(await self._gallery_source(image_id), strength)

    async def reuse_stored(self, image_id: str) -> None:
        """/?reuse=img_… from the gallery: the user's own image only; an edit with its source and strength."""
        try:
            record = await off_loop(self.engine.gallery.get, image_id, self.guard.user_id)
        except NotFound:
            ui.notify("That image is not in your gallery.", type="warning")
            return
        self.reuse(record.model_dump())
        if record.kind in EDIT_KINDS:
            source = await self._gallery_source(record.source_image_id) if record.source_image_id else None
            self._restore_edit(source, record.strength)

    async def _gallery_source(self, image_id: str) -> tuple[Image.Image, bytes, str] | None:
        try:
            record = await off_loop(self.engine.gallery.get, image_id, self.guard.user_id)
            png = await off_loop(self.engine.gallery.read, record)
        except NotFound:
            return None
        return await off_loop(decoded, png), png, image_id

    def _restore_edit(self, source: tuple[Image.Image, bytes, str | None] | None, strength: float | None) -> None:
        if source is None:
            ui.notify("The picture this edit was made from is no longer here: its settings are loaded, without it.",
                      type="warning")
            return
        self.start_edit(*source)
        if strength is not None:
            self.strength.value = strength

    async def send_to_edit(self, result: GenerationResult) -> None:
        image = await off_loop(decoded, result.png)
        self.start_edit(image, result.png, result.image_id if result.stored else None)
        self.prompt.value = result.params.prompt
        ui.notify("Image ready to edit: change the prompt and press Edit image.")

    async def remove_background(self, result: GenerationResult) -> None:
        user = await self.guard.user()
        if user is None:
            return
        notice = ui.notification("Removing the background…", spinner=True, timeout=None)
        try:
            cut = await actions.remove_background(self.engine, user, result.png, result.params.prompt)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        finally:
            notice.dismiss()
        self._add_result(cut, BACKGROUND_REMOVAL_CREDITS)
