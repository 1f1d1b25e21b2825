"""Stored images for the signed-in studio user: full PNGs and small thumbnails for the gallery grid.

Served by the studio (session cookie), never by the API; someone else's image id answers 404,
exactly like a missing one.
"""

from __future__ import annotations

import io

from fastapi import HTTPException
from fastapi.responses import Response
from nicegui import app
from PIL import Image

from engine.errors import NotFound
from engine.service import ImageEngine
from studio import auth
from studio.offload import off_loop

THUMB_PX = 384


def image_url(image_id: str) -> str:
    return f"/studio/media/{image_id}.png"


def thumb_url(image_id: str) -> str:
    return f"/studio/media/{image_id}/thumb.webp"


def thumbnail(png: bytes, size: int = THUMB_PX) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, format="WEBP", quality=82)
    return out.getvalue()


def owned_png(engine: ImageEngine, image_id: str, user_id: str) -> bytes:
    """The stored PNG of the user's image (blocking: the database, then the file)."""
    return engine.gallery.read(engine.gallery.get(image_id, user_id))


def register(engine: ImageEngine) -> None:
    async def owned_png_of_session(image_id: str) -> bytes:
        user = await auth.signed_in_user(engine)  # the session is bound to this request: read it on the loop
        if user is None:
            raise HTTPException(404)
        try:
            return await off_loop(owned_png, engine, image_id, user.id)
        except NotFound as exc:
            raise HTTPException(404) from exc

    headers = {"Cache-Control": "private, max-age=3600"}

    @app.get("/studio/media/{image_id}.png", include_in_schema=False)
    async def full_image(image_id: str) -> Response:
        return Response(await owned_png_of_session(image_id), media_type="image/png", headers=headers)

    @app.get("/studio/media/{image_id}/thumb.webp", include_in_schema=False)
    async def thumb_image(image_id: str) -> Response:
        png = await owned_png_of_session(image_id)
        return Response(await off_loop(thumbnail, png), media_type="image/webp", headers=headers)
