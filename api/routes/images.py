"""Stored images: list, read (owner or signed link), metadata, delete."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from api.deps import CurrentUser, EngineDep, bearer_scheme, get_current_user
from api.responses import error_responses, generation_info, image_response, ok
from api.schemas import Envelope, GenerationInfo
from engine.data.tables import ImageRecord
from engine.errors import NotFound, Unauthenticated
from engine.generation.params import StoredText, read_png_metadata
from engine.storage.gallery import valid_signature

router = APIRouter(prefix="/images", tags=["images"])


class StoredImage(GenerationInfo):
    id: str
    job_id: str | None
    kind: str
    bytes: int
    created_at: datetime
    url: str


class ImageList(BaseModel):
    images: list[StoredImage]
    total: int
    limit: int
    offset: int


class ImageInfo(StoredImage):
    metadata: dict[str, Any]


class DeletedImage(BaseModel):
    id: str
    deleted: bool


def record_public(record: ImageRecord) -> dict:
    data = generation_info(record.model_dump(exclude={"file_path", "user_id", "workspace_id"}))
    data["url"] = f"/api/v1/images/{record.id}"
    return data


@router.get("", response_model=Envelope[ImageList], responses=error_responses(401))
def list_images(user: CurrentUser, engine: EngineDep,
                q: Annotated[StoredText | None, Query(max_length=200)] = None,
                model: Annotated[StoredText | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 24,
                # Bounded: SQLite integers are 64-bit, a larger offset was an OverflowError (500).
                offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0):
    """Your stored images, newest first; filter by prompt text (`q`) and `model`."""
    rows, total = engine.gallery.list(user.id, query=q, model=model, limit=limit, offset=offset)
    return ok({"images": [record_public(r) for r in rows], "total": total, "limit": limit, "offset": offset})


@router.get("/{image_id}", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "The PNG"}, **error_responses(401, 404)})
def get_image(image_id: str, request: Request, engine: EngineDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
              expires: int | None = None, signature: str | None = None,
              format: str = "png"):  # noqa: A002  (checked after authentication, like every other input)
    """The PNG, for its owner (Bearer auth) or anyone with a valid signed link (`expires` + `signature`);
    `format=jpeg` or `webp` converts it on the way out (the OpenAI dialect's `output_format`)."""
    if signature is not None and expires is not None:
        # Links made before per-use keys were signed with the server secret itself: they keep working until
        # they expire (30 days at most), so links already put into posts don't break on an upgrade.
        if not any(valid_signature(image_id, expires, signature, key)
                   for key in (engine.keys.image_links, engine.secret_key)):
            raise NotFound(f"no image '{image_id}'")  # an expired or forged link reveals nothing
        record = engine.gallery.get(image_id, None)
    else:
        if credentials is None:
            raise Unauthenticated("send 'Authorization: Bearer …' or use the signed link from the generation")
        user = get_current_user(request, engine, credentials)
        record = engine.gallery.get(image_id, user.id)
    return image_response(engine.gallery.read(record), format, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{image_id}/info", response_model=Envelope[ImageInfo], responses=error_responses(401, 404))
def image_info(image_id: str, user: CurrentUser, engine: EngineDep):
    """Every generation parameter of one of your images: the record and the PNG's own metadata."""
    record = engine.gallery.get(image_id, user.id)
    return ok(record_public(record) | {"metadata": read_png_metadata(engine.gallery.read(record))})


@router.delete("/{image_id}", response_model=Envelope[DeletedImage], responses=error_responses(401, 404))
def delete_image(image_id: str, user: CurrentUser, engine: EngineDep):
    engine.gallery.delete(image_id, user.id)
    return ok({"id": image_id, "deleted": True})
