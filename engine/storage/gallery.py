"""A user's stored images: list, read, delete. Other users' images are indistinguishable from missing ones."""

from __future__ import annotations

import hashlib
import hmac
import io
import time
import zipfile

from sqlalchemy import func
from sqlmodel import col, select

from engine.data.db import read_scope, session_scope
from engine.data.tables import ImageRecord
from engine.errors import InvalidRequest, NotFound
from engine.storage.files import ImageStore


class Gallery:
    def __init__(self, db, store: ImageStore):
        self._db = db
        self.store = store

    def list(self, user_id: str, *, query: str | None = None, model: str | None = None, limit: int = 24,
             offset: int = 0, favorites: bool = False, board: str | None = None) -> tuple[list[ImageRecord], int]:
        conditions = [ImageRecord.user_id == user_id, col(ImageRecord.file_path).is_not(None)]
        if favorites:
            conditions.append(col(ImageRecord.favorite).is_(True))
        if board:
            conditions.append(ImageRecord.board == board)
        if query:
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(col(ImageRecord.prompt).ilike(f"%{escaped}%", escape="\\"))
        if model:
            conditions.append(ImageRecord.model == model)
        with read_scope(self._db) as session:
            total = session.exec(select(func.count()).select_from(ImageRecord).where(*conditions)).one()
            rows = session.exec(select(ImageRecord).where(*conditions)
                                .order_by(col(ImageRecord.created_at).desc(), col(ImageRecord.id).desc())
                                .offset(offset).limit(limit)).all()
        return list(rows), int(total)

    def get(self, image_id: str, user_id: str | None) -> ImageRecord:
        """The stored image ``image_id`` of ``user_id`` (None: any owner, for signed links)."""
        with read_scope(self._db) as session:
            record = session.get(ImageRecord, image_id)
        if record is None or record.file_path is None or (user_id is not None and record.user_id != user_id):
            raise NotFound(f"no image '{image_id}'")
        return record

    def read(self, record: ImageRecord) -> bytes:
        try:
            return self.store.read(record.file_path)
        except FileNotFoundError as exc:
            raise NotFound(f"the file of image '{record.id}' is missing") from exc

    def delete(self, image_id: str, user_id: str) -> None:
        record = self.get(image_id, user_id)
        with session_scope(self._db) as session:
            session.delete(session.get(ImageRecord, record.id))
            session.commit()
        # The record goes first: a crash in between leaves an orphan file, never a record without one.
        self.store.delete(record.file_path)

    def set_favorite(self, image_ids: list[str], user_id: str, favorite: bool) -> int:
        """Star (or unstar) the user's images; returns how many were theirs."""
        return self._update(image_ids, user_id, favorite=bool(favorite))

    def set_board(self, image_ids: list[str], user_id: str, board: str | None) -> int:
        """Put the user's images on a board (None or "": on none); returns how many were theirs."""
        name = " ".join((board or "").split())
        if len(name) > 64:
            raise InvalidRequest("a board's name is 64 characters at most", field="board")
        return self._update(image_ids, user_id, board=name or None)

    def _update(self, image_ids: list[str], user_id: str, **values) -> int:
        if not image_ids:
            return 0
        with session_scope(self._db) as session:
            rows = session.exec(select(ImageRecord).where(col(ImageRecord.id).in_(image_ids),
                                                          ImageRecord.user_id == user_id)).all()
            for row in rows:
                for key, value in values.items():
                    setattr(row, key, value)
                session.add(row)
            session.commit()
        return len(rows)

    def boards(self, user_id: str) -> list[str]:
        with read_scope(self._db) as session:
            return sorted(session.exec(select(ImageRecord.board).distinct().where(
                ImageRecord.user_id == user_id, col(ImageRecord.board).is_not(None),
                col(ImageRecord.file_path).is_not(None))).all())

    def zip_of(self, image_ids: list[str], user_id: str) -> bytes:
        """The user's images as one zip of PNGs (others' ids and missing files are left out)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed
            for image_id in dict.fromkeys(image_ids):
                try:
                    record = self.get(image_id, user_id)
                    archive.writestr(f"{record.id}.png", self.read(record))
                except NotFound:
                    continue
        return buffer.getvalue()

    def models_used(self, user_id: str) -> list[str]:
        """The models of a user's stored images (the gallery's filter)."""
        with read_scope(self._db) as session:
            return sorted(session.exec(select(ImageRecord.model).distinct().where(
                ImageRecord.user_id == user_id, col(ImageRecord.file_path).is_not(None))).all())

    def used_bytes(self, workspace_id: str) -> int:
        with read_scope(self._db) as session:
            total = session.exec(select(func.coalesce(func.sum(ImageRecord.bytes), 0)).where(
                ImageRecord.workspace_id == workspace_id, col(ImageRecord.file_path).is_not(None))).one()
        return int(total)


def image_signature(image_id: str, expires: int, secret: str) -> str:
    return hmac.new(secret.encode(), f"{image_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def signed_query(subject: str, secret: str, ttl_s: int) -> str:
    """``expires=…&signature=…`` for a link to ``subject`` (an image id, or ``result:<job id>``), good for ``ttl_s``."""
    expires = int(time.time()) + ttl_s
    return f"expires={expires}&signature={image_signature(subject, expires, secret)}"


def signed_image_path(image_id: str, secret: str, ttl_s: int = 30 * 86400) -> str:
    """A link that lets anyone holding it read one stored image until it expires (for <img src>)."""
    return f"/api/v1/images/{image_id}?{signed_query(image_id, secret, ttl_s)}"


def valid_signature(image_id: str, expires: int, signature: str, secret: str) -> bool:
    # Bytes, not str: compare_digest raises on a str with non-ASCII characters (a 500 for a forged link).
    expected = image_signature(image_id, expires, secret).encode()
    return expires >= time.time() and hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))
