"""Idempotency keys: the first (2xx) response to a POST sent with an ``Idempotency-Key`` is kept for a day and
replayed to retries, from any process on the database, instead of running (and charging) the request again."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import delete

from engine.data.db import insert_if_absent, session_scope
from engine.data.tables import IdempotencyRecord, utcnow

IDEMPOTENCY_TTL = timedelta(hours=24)  # as long as a retried request is still the same request (Stripe's too)


class IdempotencyStore:
    def __init__(self, db):
        self._db = db

    def claim(self, user_id: str, key: str, endpoint: str, body_hash: str) -> IdempotencyRecord | None:
        """None when this request is the first with the key (a record now says it is running); otherwise the
        first one's record (still running while its ``status`` is None)."""
        while True:
            with session_scope(self._db) as session:
                inserted = insert_if_absent(session, IdempotencyRecord, ("user_id", "key"), user_id=user_id, key=key,
                                            endpoint=endpoint, body_hash=body_hash, created_at=utcnow())
                session.commit()
                if inserted:
                    return None
                existing = session.get(IdempotencyRecord, (user_id, key), populate_existing=True)
            if existing is None:
                continue  # the first attempt failed and was forgotten meanwhile: this one runs
            if existing.created_at < utcnow() - IDEMPOTENCY_TTL:
                self.forget(user_id, key)  # expired (the housekeeping had not got to it yet): a new request
                continue
            return existing

    def complete(self, user_id: str, key: str, status: int, response: dict) -> None:
        with session_scope(self._db) as session:
            row = session.get(IdempotencyRecord, (user_id, key))
            row.status, row.response = status, response
            session.add(row)
            session.commit()

    def forget(self, user_id: str, key: str) -> None:
        """The first attempt failed: a retry runs again."""
        with session_scope(self._db) as session:
            session.exec(delete(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id,
                                                         IdempotencyRecord.key == key))
            session.commit()

    def purge(self) -> int:
        """Forget records past their day (the housekeeping)."""
        with session_scope(self._db) as session:
            removed = session.exec(delete(IdempotencyRecord).where(
                IdempotencyRecord.created_at < utcnow() - IDEMPOTENCY_TTL)).rowcount
            session.commit()
            return removed
