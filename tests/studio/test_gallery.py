"""Gallery: filter, detail with every parameter, delete with confirm; only ever your own images."""

import pytest

from engine.data.db import session_scope
from engine.data.tables import ImageRecord
from engine.generation.params import GenerationParams
from tests.studio.conftest import ADMIN_EMAIL, USER_EMAIL, count, eventually, set_value, sign_in

# UI flows: their database calls are the engine's, which the API tests run on PostgreSQL too (CI time).
pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_pass_only]


def stored(engine, owner, prompt: str, model: str = "tiny-sd", seed: int = 1) -> str:
    params = GenerationParams(prompt=prompt, model=model, width=256, height=256, seed=seed)
    return engine.generate(owner, params, store=True).image_id


async def test_filter_by_prompt_and_model(user, engine, member_account):
    stored(engine, member_account, "a red fox")
    stored(engine, member_account, "a blue whale", model="tiny-sdxl")
    stored(engine, member_account, "a red car", model="tiny-sdxl")
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    await user.should_see(content="3 images")
    assert count(user, "gallery-item") == 3
    user.find(marker="search").type("red")
    await user.should_see(content="2 images")
    set_value(user, "model-filter", "tiny-sdxl")
    await user.should_see(content="1 image")
    await user.should_see(content="a red car")
    user.find(marker="search").clear()
    set_value(user, "model-filter", "")
    await user.should_see(content="3 images")
    user.find(marker="search").type("nothing like this")
    await user.should_see("No images match")


async def test_detail_shows_every_parameter_and_delete_asks_first(user, engine, member_account):
    image_id = stored(engine, member_account, "a lighthouse at dusk", seed=1234)
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    user.find(marker="gallery-item").click()
    await user.should_see(marker="detail", retries=20)
    with user.scope(marker="parameters"):
        for text in ("a lighthouse at dusk", "tiny-sd", "256 × 256", "1234", image_id):
            await user.should_see(content=text)
    with user.scope(marker="png-metadata"):
        await user.should_see(content="guidance_scale")  # from the PNG's own text chunks

    user.find(marker="download").click()
    assert (await user.download.next()).content.startswith(b"\x89PNG")

    user.find(marker="delete").click()
    await user.should_see("Delete this image?")
    assert engine.gallery.list(member_account.id)[1] == 1  # nothing gone before the confirm
    user.find(marker="confirm-delete").click()
    await user.should_see("Image deleted.")
    assert engine.gallery.list(member_account.id)[1] == 0
    await user.should_see("No images yet")


async def test_paging(user, engine, member_account):
    png = engine.gallery.read(engine.gallery.get(stored(engine, member_account, "picture 0"), None))
    for i in range(1, 25):  # quicker than 24 more generations
        record = ImageRecord(user_id=member_account.id, workspace_id=member_account.workspace_id, model="tiny-sd",
                             prompt=f"picture {i}", width=256, height=256, steps=2, guidance_scale=5.0, seed=i)
        record.file_path = engine.store.save(record.id, png, "2026/01")
        with session_scope(engine.db) as session:
            session.add(record)
            session.commit()
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    await user.should_see(content="25 images")
    assert count(user, "gallery-item") == 24
    set_value(user, "pager", 2)
    await eventually(lambda: count(user, "gallery-item") == 1)


async def test_someone_elses_images_stay_out_of_reach(user, engine, admin_account, member_account):
    theirs = stored(engine, admin_account, "the admin's private picture")
    mine = stored(engine, member_account, "my own picture")
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    await user.should_see(content="1 image")
    await user.should_not_see(content="the admin's private picture")
    # The studio's image routes answer 404 for another user's image, as for a missing one.
    assert (await user.http_client.get(f"/studio/media/{mine}.png")).status_code == 200
    assert (await user.http_client.get(f"/studio/media/{mine}/thumb.webp")).headers["content-type"] == "image/webp"
    for path in (f"/studio/media/{theirs}.png", f"/studio/media/{theirs}/thumb.webp"):
        assert (await user.http_client.get(path)).status_code == 404
    # Reuse links only load your own images.
    await user.open(f"/?reuse={theirs}")
    await user.should_see("That image is not in your gallery.", retries=20)
    await user.should_not_see(content="the admin's private picture")


async def test_image_routes_need_a_session(user, engine, admin_account):
    image_id = stored(engine, admin_account, "a picture")
    assert (await user.http_client.get(f"/studio/media/{image_id}.png")).status_code == 404
    await sign_in(user, ADMIN_EMAIL)
    assert (await user.http_client.get(f"/studio/media/{image_id}.png")).status_code == 200


async def test_a_plan_without_storage_explains_the_empty_gallery(user, engine, admin_account):
    from engine.accounts.admin import create_account

    with session_scope(engine.db) as session:
        create_account(session, "free@example.com", "correct horse battery", plan_slug="free")
    await sign_in(user, "free@example.com", path="/login?next=/gallery")
    await user.should_see(content="Storage is off for your plan")


async def test_stars_boards_and_the_favourites_filter(user, engine, member_account):
    fox = stored(engine, member_account, "a red fox")
    stored(engine, member_account, "a blue whale")
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    await user.should_see(content="2 images")
    user.find(marker=f"star-{fox}").click()
    await eventually(lambda: engine.gallery.get(fox, member_account.id).favorite)
    user.find(marker="favorites-filter").click()
    await user.should_see(content="1 image")
    await user.should_see(content="a red fox")


async def test_select_several_to_board_zip_and_delete(user, engine, member_account):
    import io
    import zipfile

    ids = [stored(engine, member_account, f"picture {n}", seed=n) for n in range(3)]
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    user.find(marker="select-mode").click()
    await user.should_see("Click images to select them")
    for image_id in ids[:2]:
        user.find(marker=f"item-{image_id}").click()  # in this mode a click on a tile selects it
    await user.should_see("2 selected")

    user.find(marker="bulk-board").click()
    user.find(marker="board-name").type("Client A")
    user.find(marker="save-board").click()
    await user.should_see("2 images on “Client A”.")
    assert [engine.gallery.get(i, member_account.id).board for i in ids] == ["Client A", "Client A", None]
    set_value(user, "board-filter", "Client A")
    await user.should_see(content="2 images")

    user.find(marker="bulk-zip").click()
    archive = zipfile.ZipFile(io.BytesIO((await user.download.next()).content))
    assert sorted(archive.namelist()) == sorted(f"{i}.png" for i in ids[:2])

    user.find(marker="bulk-delete").click()
    user.find(marker="confirm-bulk-delete").click()
    await user.should_see("Deleted 2 images.")
    assert engine.gallery.list(member_account.id)[1] == 1


async def test_the_detail_steps_to_the_previous_and_next_image(user, engine, member_account):
    older = stored(engine, member_account, "the older one", seed=1)
    newer = stored(engine, member_account, "the newer one", seed=2)
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    user.find(marker=f"item-{newer}").click()
    await user.should_see(marker="detail", retries=20)
    with user.scope(marker="parameters"):
        await user.should_see(content="the newer one")
    user.find(marker="detail-next").click()  # the arrow keys do the same (a keyboard listener in the dialog)
    await user.should_see(content=older, retries=20)
    assert count(user, "detail") == 1  # the dialog shows the next image, not a second dialog
    user.find(marker="detail-previous").click()
    await user.should_see(content=newer, retries=20)


async def test_upscale_a_gallery_image(user, engine, member_account):
    image_id = stored(engine, member_account, "a small boat")
    await sign_in(user, USER_EMAIL, path="/login?next=/gallery")
    user.find(marker=f"item-{image_id}").click()
    await user.should_see(marker="detail", retries=20)
    user.find(marker="upscale").click()  # on Generate, where the run shows

    def upscaled():
        rows = [r for r in engine.gallery.list(member_account.id)[0] if r.kind == "upscale"]
        return rows and rows[0]

    await eventually(upscaled, 60)
    record = upscaled()
    assert (record.width, record.height, record.source_image_id) == (512, 512, image_id)
