"""Generate: a tiny model's image on the page, metered like the API; prompt tools; result actions."""

import pytest
from sqlmodel import select

from engine.accounts.admin import set_suspended
from engine.data.db import session_scope
from engine.data.tables import ImageRecord, Workspace
from studio.actions import seeds_for
from tests.studio.conftest import USER_EMAIL, count, eventually, set_value, sign_in, submit_held, value_of

# UI flows: their database calls are the engine's, which the API tests run on PostgreSQL too (CI time).
pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_pass_only]


def images_of(engine, user_id) -> list[ImageRecord]:
    with session_scope(engine.db) as session:
        return list(session.exec(select(ImageRecord).where(ImageRecord.user_id == user_id)
                                 .order_by(ImageRecord.created_at)).all())


async def generate(user, prompt: str = "a red fox in the snow") -> None:
    user.find(marker="prompt").clear().type(prompt)
    user.find(marker="generate").click()
    await eventually(lambda: count(user, "cancel") == 1, timeout=60)  # the run started
    await eventually(lambda: count(user, "cancel") == 0, timeout=60)  # and is over
    assert count(user, "result") >= 1


async def test_generate_with_a_tiny_model_shows_the_image_and_counts_against_the_plan(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sdxl")
    await generate(user)
    (image,) = user.find(marker="result-image").elements
    assert image.source.startswith("data:image/png;base64,")
    await user.should_see(content="tiny-sdxl · 256×256")
    await user.should_see(content="saved to gallery")
    (record,) = images_of(engine, member_account.id)
    assert record.model == "tiny-sdxl" and record.prompt == "a red fox in the snow" and record.file_path
    usage = engine.meter.usage(member_account.workspace_id)
    assert usage["counts"]["day"] == (1, 1, 1)  # one request, one image, one credit: as through the API
    with session_scope(engine.db) as session:
        assert session.get(Workspace, member_account.workspace_id).credits == 10000 - 1


async def test_several_images_with_a_locked_seed(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    set_value(user, "seed", 42)  # a seed typed in is used: typing it locks it
    set_value(user, "count", 2)
    set_value(user, "size", "custom")
    set_value(user, "width", 320)
    set_value(user, "height", 256)
    await generate(user)
    await eventually(lambda: len(images_of(engine, member_account.id)) == 2)
    records = images_of(engine, member_account.id)
    assert sorted(r.seed for r in records) == [42, 43]
    assert {(r.width, r.height) for r in records} == {(320, 256)}
    assert engine.meter.usage(member_account.workspace_id)["counts"]["day"] == (2, 2, 2)
    assert value_of(user, "seed") == 42  # locked: stays for the next run
    assert count(user, "batch-grid") == 1 and count(user, "result") == 2  # side by side, to compare


async def test_a_typed_seed_is_used_and_an_unlocked_run_leaves_the_field_empty(user, engine, member_account):
    """Defect: 12345 typed without clicking the lock gave 934358543; after a run the unlocked field showed the
    last seed as if it would be reused."""
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    set_value(user, "seed", 12345)
    await generate(user)
    assert [r.seed for r in images_of(engine, member_account.id)] == [12345]
    assert value_of(user, "seed") == 12345  # typed, so locked: kept for the next run
    set_value(user, "seed", None)  # cleared: random again
    await generate(user, "a second one")
    second = images_of(engine, member_account.id)[-1]
    assert value_of(user, "seed") is None  # the field doesn't pretend the last seed will be reused
    await user.should_see(f"Last seed {second.seed}: lock it to reuse it")


async def test_the_size_hint_follows_a_custom_size_and_says_when_it_is_rounded(user, member_account):
    """Defect: the hint stayed at "512 × 512 px" whatever was typed; 777×333 silently became 776×336."""
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-flux")  # multiples of 16
    set_value(user, "size", "custom")
    set_value(user, "width", 640)
    set_value(user, "height", 384)
    await user.should_see("640 × 384 px")
    set_value(user, "width", 777)
    set_value(user, "height", 333)
    await user.should_see(content="784 × 336 px: Tiny FLUX (offline test model) takes multiples of 16")
    await user.should_see(content="(asked 777 × 333)")


async def test_random_seed_button_locks_a_new_seed(user, member_account):
    await sign_in(user, USER_EMAIL)
    assert value_of(user, "seed") is None
    user.find(marker="seed-random").click()
    assert value_of(user, "seed") is not None
    await user.should_see(marker="seed-lock")


async def test_builder_and_enhance_fill_the_prompt(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    user.find(marker="builder-subject").type("a red fox")
    user.find(marker="builder-setting").type("a snowy birch forest")
    user.find(marker="builder-lighting").type("soft golden hour")
    user.find(marker="builder-apply").click()
    assert value_of(user, "prompt").startswith("a red fox, in a snowy birch forest, soft golden hour")
    set_value(user, "tone", "cinematic")
    user.find(marker="enhance").click()
    await eventually(lambda: "cinematic" in value_of(user, "prompt"))
    await user.should_see("Prompt enhanced in a cinematic tone.")
    assert engine.meter.usage(member_account.workspace_id)["counts"]["day"] == (0, 0, 0)  # free, outside the quota


async def test_enhance_builds_from_the_builder_when_the_prompt_is_empty(user, member_account):
    await sign_in(user, USER_EMAIL)
    user.find(marker="builder-subject").type("a lighthouse")
    user.find(marker="enhance").click()
    await eventually(lambda: (value_of(user, "prompt") or "").startswith("a lighthouse,"))


async def test_result_actions_reuse_remove_background_and_edit(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    await generate(user, "a teapot on a table")
    first = images_of(engine, member_account.id)[0]

    user.find(marker="prompt").clear().type("something else")
    user.find(marker="reuse").click()
    assert value_of(user, "prompt") == "a teapot on a table" and value_of(user, "seed") == first.seed

    user.find(marker="copy-seed").click()
    await user.should_see(f"Seed {first.seed} copied.")

    user.find(marker="download").click()
    response = await user.download.next()
    assert response.content.startswith(b"\x89PNG")

    user.find(marker="remove-bg").click()
    # (A first cut-out loads the ONNX model: on a CI box shared with another test worker, well past 30 s once.)
    await eventually(lambda: any(r.kind == "remove_background" for r in images_of(engine, member_account.id)), 90)
    await user.should_see(content="remove background · rembg:")

    user.find(marker="edit").click()  # on the cut-out, now the newest result
    await user.should_see(marker="edit-source")
    user.find(marker="prompt").clear().type("the same, in blue")
    user.find(marker="generate").click()
    await eventually(lambda: any(r.kind == "edit" for r in images_of(engine, member_account.id)), 30)
    await user.should_see(content="edit · tiny-sd")
    user.find(marker="clear-edit").click()
    await user.should_not_see(marker="edit-source")


async def test_reuse_from_the_gallery_link(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    await generate(user, "a castle at night")
    record = images_of(engine, member_account.id)[0]
    await user.open(f"/?reuse={record.id}")
    await user.should_see(marker="prompt")
    # The page loads the record after it is drawn (the draft shows the same prompt meanwhile): wait for the seed.
    await eventually(lambda: value_of(user, "seed") == record.seed)
    assert value_of(user, "prompt") == "a castle at night"


async def test_unavailable_models_are_listed_with_the_reason(user, member_account):
    await sign_in(user, USER_EMAIL)
    (model,) = user.find(marker="model").elements
    assert "FLUX.2 [pro] · unavailable" in model.options.values()
    assert "Tiny SD (offline test model) · ready" in model.options.values()
    user.find(marker="all-models").click()
    await user.should_see(marker="models-dialog")  # built after the models' states are read, off the loop
    with user.scope(marker="models-dialog"):
        await user.should_see(content="Lucid Origin")
        await user.should_see(content="proprietary model with no open weights; it can only run on its vendor's "
                                      "service (Leonardo.Ai)")
    set_value(user, "model", "flux-2-pro")
    await user.should_see(content="proprietary model with no open weights")
    (button,) = user.find(marker="generate").elements
    assert not button.enabled


async def test_a_suspended_account_cannot_generate(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    with session_scope(engine.db) as session:
        set_suspended(session, member_account.workspace_id, True)
    user.find(marker="prompt").type("a boat")
    user.find(marker="generate").click()
    await user.should_see("this account is suspended", retries=30)
    assert images_of(engine, member_account.id) == []


async def test_cancel_stops_the_run_and_charges_nothing(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    engine.worker.stop()  # nothing runs: the job waits in the queue until cancelled
    engine.worker = type(engine.worker)()  # a fresh worker that is never started
    user.find(marker="prompt").type("a slow picture")
    user.find(marker="generate").click()
    await user.should_see(marker="cancel", retries=30)
    user.find(marker="cancel").click()
    await user.should_see("Cancelled.", retries=30)
    assert images_of(engine, member_account.id) == []
    assert engine.meter.usage(member_account.workspace_id)["counts"]["day"] == (0, 0, 0)


def test_seeds_for_a_locked_seed_count_up():
    assert seeds_for(3, 7, locked=True) == [7, 8, 9]
    assert seeds_for(2, 2**32 - 1, locked=True) == [2**32 - 1, 0]
    assert len(set(seeds_for(5, 7, locked=False))) == 5


async def test_edit_an_uploaded_image(user, engine, member_account):
    import io

    from nicegui import ui
    from nicegui.elements.upload_files import SmallFileUpload
    from PIL import Image

    await sign_in(user, USER_EMAIL)
    (upload,) = user.find(kind=ui.upload).elements
    await upload.handle_uploads([SmallFileUpload(name="notes.txt", content_type="text/plain", _data=b"not a picture")])
    await user.should_see("input_image", retries=20)  # refused, with the reason
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), "teal").save(buffer, format="PNG")
    await upload.handle_uploads([SmallFileUpload(name="teal.png", content_type="image/png", _data=buffer.getvalue())])
    await user.should_see(marker="edit-source", retries=20)
    await user.should_see(content="344 × 256 px")  # an edit keeps the picture's 4:3 shape
    user.find(marker="prompt").type("the same, at night")
    user.find(marker="generate").click()
    await eventually(lambda: [r.kind for r in images_of(engine, member_account.id)] == ["edit"], 30)


def test_progress_of_a_batch_counts_every_image_by_its_own_steps():
    """Defect: two images run together showed "Image 1 of 2" and the bar jumped from 50 % to done."""
    from types import SimpleNamespace

    from studio.actions import GenerationRun

    class FakeFuture:
        def __init__(self, done: bool):
            self._done = done

        def done(self) -> bool:
            return self._done

    def task(step, total, done=False):
        return SimpleNamespace(step=step, total=total, future=FakeFuture(done), preview=None)

    run = GenerationRun.__new__(GenerationRun)
    run.params = [None, None]
    run.tasks = [task(3, 8), task(3, 8)]  # batched: both at step 3
    progress = run.progress()
    assert progress.label() == "Images 1–2 of 2 · Step 3 of 8" and progress.fraction == 3 / 8
    run.params, run.tasks = [None] * 3, [task(4, 4, done=True), task(2, 4), task(0, 0)]
    progress = run.progress()
    assert progress.label() == "Image 2 of 3 · Step 2 of 4" and progress.fraction == (1 + 0.5) / 3
    run.params, run.tasks = [None], [task(1, 2)]
    assert run.progress().label() == "Step 1 of 2"


async def test_remove_background_is_not_offered_without_its_model_file(user, engine, member_account, monkeypatch):
    monkeypatch.setattr(type(engine.background_remover()), "available", lambda self: False)
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    await generate(user)
    assert count(user, "remove-bg") == 0 and count(user, "reuse") == 1


async def test_steps_over_the_limit_run_at_the_limit_and_a_long_prompt_is_refused_with_a_word(user, engine,
                                                                                               member_account):
    """Defects: steps 60 typed and Generate clicked at once failed with a raw validation message; a 3000-character
    prompt was cut to 2000 without a word."""
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    set_value(user, "steps", 60)
    await generate(user)
    assert [r.steps for r in images_of(engine, member_account.id)] == [50]
    assert value_of(user, "steps") == 50
    user.find(marker="prompt").clear().type("x" * 3000)
    user.find(marker="generate").click()
    await user.should_see("The prompt is 3,000 characters; at most 2,000 are used. Shorten it.")
    assert value_of(user, "prompt") == "x" * 3000  # nothing cut


async def test_an_edit_keeps_its_context_strength_source_and_reuse(user, engine, member_account):
    """Defects: the strength slider had no label, an edit's strength and source weren't recorded, and Reuse
    turned an edit into text-to-image."""
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    await generate(user, "a red door")
    (source,) = images_of(engine, member_account.id)
    user.find(marker="edit").click()
    await user.should_see(marker="strength-label")
    set_value(user, "strength", 0.4)
    await user.should_see(content="0.40")
    user.find(marker="prompt").clear().type("a blue door")
    user.find(marker="generate").click()
    await eventually(lambda: len(images_of(engine, member_account.id)) == 2, 30)
    edit = images_of(engine, member_account.id)[-1]
    assert (edit.kind, edit.strength, edit.source_image_id) == ("edit", 0.4, source.id)
    from engine.generation.params import read_png_metadata

    recorded = read_png_metadata(engine.gallery.read(edit))  # the PNG says it too
    assert recorded["strength"] == 0.4 and recorded["source_image_id"] == source.id

    # The image is stored before the page shows it: wait for the edit's own result, or Reuse hits the source's.
    await eventually(lambda: count(user, "cancel") == 0, 30)
    await user.should_see(content="edit · tiny-sd")
    user.find(marker="clear-edit").click()
    await eventually(lambda: count(user, "result") == 1, 30)
    user.find(marker="reuse").click()  # on the edit, the newest result
    await user.should_see(marker="edit-source")
    assert value_of(user, "strength") == 0.4 and value_of(user, "prompt") == "a blue door"

    await user.open(f"/?reuse={edit.id}")  # from the gallery, on a new page (strength 0.6 there): the same
    await user.should_see(marker="edit-source")
    assert value_of(user, "strength") == 0.4


async def test_the_draft_and_recent_results_survive_a_reload(user, engine, member_account):
    """Defect: nothing on Generate survived a reload or a restart (kept in the database, not the browser)."""
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    await generate(user, "a lighthouse at dusk")
    user.find(marker="prompt").clear().type("a draft never generated")
    set_value(user, "seed", 777)
    set_value(user, "count", 2)
    user.find(marker="prompt").trigger("blur")  # the draft is saved when the prompt loses focus
    await eventually(lambda: (engine.accounts.user(member_account.id).preferences or {}).get("draft", {})
                     .get("prompt") == "a draft never generated")
    await user.open("/")
    assert value_of(user, "prompt") == "a draft never generated" and value_of(user, "seed") == 777
    assert value_of(user, "model") == "tiny-sd" and value_of(user, "count") == 2
    await user.should_see(content="tiny-sd · 256×256")  # the earlier result is back
    assert count(user, "result") == 1


async def test_the_queue_shows_jobs_from_other_tabs_with_their_place_and_cancels_them(user, engine, member_account):
    """Defect: a job waiting behind another tab's showed "Loading the model…"; a closed tab's jobs were hidden."""
    from engine.generation.params import GenerationParams

    import threading

    await sign_in(user, USER_EMAIL)
    # Another tab (or one since closed) has a job running, held here until the test lets it go, and one queued.
    release = threading.Event()
    first = submit_held(engine, member_account, "a held one", release)
    second = engine.submit_generation(member_account, GenerationParams(prompt="a waiting one", model="tiny-sd"))
    await user.should_see(marker=f"queued-{second.id}", retries=50)
    await user.should_see(content="Queued behind 1", retries=50)
    user.find(marker=f"cancel-{second.id}").click()
    await eventually(lambda: second.future.done(), 30)
    release.set()
    await eventually(lambda: first.future.done(), 30)
    await eventually(lambda: count(user, "queue") == 0, 30)  # empty: the panel hides

    quick = engine.submit_generation(member_account, GenerationParams(prompt="made in another tab", model="tiny-sd",
                                                                      width=256, height=256))
    await eventually(lambda: quick.future.done(), 30)
    await user.should_see(content="made in another tab", retries=50)  # it joins this page's results


async def test_guidance_and_sampler_run_and_are_remembered_per_model(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    set_value(user, "guidance", 3.5)
    set_value(user, "sampler", "DPM++ 2M")
    set_value(user, "schedule", "karras")
    await generate(user)
    (record,) = images_of(engine, member_account.id)
    from engine.generation.params import read_png_metadata

    recorded = read_png_metadata(engine.gallery.read(record))
    assert (record.guidance_scale, recorded["sampler"], recorded["scheduler"]) == (3.5, "DPM++ 2M", "karras")

    set_value(user, "model", "tiny-flux")  # flow matching: no sampler list, its own guidance default
    await user.should_see("Tiny FLUX (offline test model) samples with its own flow-matching scheduler")
    assert value_of(user, "sampler") == ""
    set_value(user, "model", "tiny-sd")  # tiny-sd's settings come back
    assert (value_of(user, "guidance"), value_of(user, "sampler"), value_of(user, "schedule")) == (
        3.5, "DPM++ 2M", "karras")


async def test_a_dropped_png_with_settings_offers_to_load_them(user, engine, member_account):
    import io

    from nicegui import ui
    from nicegui.elements.upload_files import SmallFileUpload
    from PIL import Image, PngImagePlugin

    await sign_in(user, USER_EMAIL)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a castle on a hill\nNegative prompt: blurry\n"
                                "Steps: 12, Sampler: Euler a, CFG scale: 6.5, Seed: 4242, Size: 320x256, Model: tiny-sd")
    buffer = io.BytesIO()
    Image.new("RGB", (320, 256), "teal").save(buffer, format="PNG", pnginfo=info)
    (upload,) = user.find(kind=ui.upload).elements  # where a drop anywhere on the page goes
    await upload.handle_uploads([SmallFileUpload(name="a1111.png", content_type="image/png", _data=buffer.getvalue())])
    await user.should_see(content="Made with AUTOMATIC1111: “a castle on a hill”", retries=20)
    user.find(marker="load-settings").click()
    await user.should_see("The picture's settings are loaded; the seed is locked.")
    assert (value_of(user, "prompt"), value_of(user, "negative-prompt"), value_of(user, "model")) == (
        "a castle on a hill", "blurry", "tiny-sd")
    assert (value_of(user, "steps"), value_of(user, "seed"), value_of(user, "guidance")) == (12, 4242, 6.5)
    assert (value_of(user, "sampler"), value_of(user, "width"), value_of(user, "height")) == ("Euler a", 320, 256)
    await user.should_see(marker="edit-source")  # and it is there to edit


async def test_upscale_a_result_twice_the_size_recorded_like_a_generation(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    await generate(user, "a small house")
    (small,) = images_of(engine, member_account.id)
    user.find(marker="upscale").click()
    await eventually(lambda: len(images_of(engine, member_account.id)) == 2, 120)
    big = images_of(engine, member_account.id)[-1]
    assert (big.kind, big.width, big.height, big.seed, big.prompt) == ("upscale", 512, 512, small.seed, small.prompt)
    assert big.source_image_id == small.id and big.strength == 0.35
    await user.should_see(content="upscale · tiny-sd · 512×512")
    assert engine.meter.usage(member_account.workspace_id)["counts"]["day"][0] == 2  # metered like any image


async def test_upscale_four_times_with_the_diffusers_upscaler(user, engine, member_account):
    """Offered where the x4 upscaler's weights are (for the tiny models, the tiny upscaler: always)."""
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")  # 256×256 by default
    await generate(user, "a small boat")
    (small,) = images_of(engine, member_account.id)
    user.find(marker="upscale-x4").click()
    # a 1024×1024 decode takes ~30 s alone on two cores; a loaded CI worker needs more
    await eventually(lambda: len(images_of(engine, member_account.id)) == 2, 240)
    big = images_of(engine, member_account.id)[-1]
    assert (big.kind, big.model, big.width, big.height, big.seed) == ("upscale", "tiny-sd-upscaler", 1024, 1024,
                                                                      small.seed)
    assert big.source_image_id == small.id and big.strength is None
    await user.should_see(content="upscale · tiny-sd-upscaler · 1024×1024")


def test_a_painted_mask_is_white_where_painted_and_inverts():
    from studio.mask import mask_from_strokes

    mask = mask_from_strokes((100, 50), [(10, [(20.0, 25.0), (60.0, 25.0)])])
    assert mask.getpixel((40, 25)) == 255 and mask.getpixel((40, 5)) == 0 and mask.getpixel((16, 25)) == 255
    inverted = mask_from_strokes((100, 50), [(10, [(20.0, 25.0)])], invert=True)
    assert inverted.getpixel((20, 25)) == 0 and inverted.getpixel((90, 45)) == 255


async def test_paint_a_mask_and_inpaint(user, engine, member_account):
    await sign_in(user, USER_EMAIL)
    set_value(user, "model", "tiny-sd")
    await generate(user, "a room with a window")
    user.find(marker="edit").click()
    await user.should_see(marker="paint-mask")
    user.find(marker="paint-mask").click()
    await user.should_see(marker="mask-canvas")
    canvas = user.find(marker="mask-canvas")
    canvas.trigger("mouse", {"mouse_event_type": "mousedown", "image_x": 160, "image_y": 100})
    canvas.trigger("mouse", {"mouse_event_type": "mousemove", "image_x": 220, "image_y": 120})
    canvas.trigger("mouse", {"mouse_event_type": "mouseup", "image_x": 220, "image_y": 120})
    await user.should_see(content="1 stroke painted: that area is repainted.")
    (image,) = canvas.elements
    assert "<polyline" in image.content  # the stroke drawn over the picture
    user.find(marker="prompt").clear().type("a round window")
    user.find(marker="generate").click()
    await eventually(lambda: len(images_of(engine, member_account.id)) == 2, 30)
    inpainted = images_of(engine, member_account.id)[-1]
    assert inpainted.kind == "inpaint" and inpainted.source_image_id == images_of(engine, member_account.id)[0].id
    await user.should_see(content="inpaint · tiny-sd")
