"""The API request log: one row per /api request (time, key prefix, endpoint, status, duration, credits)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, delete, select

from engine.data.db import read_scope, session_scope
from engine.data.tables import ApiLog, utcnow
from engine.errors import DatabaseBusy

log = logging.getLogger(__name__)


class RequestLog:
    def __init__(self, db):
        self._db = db

    def write(self, entry: ApiLog) -> bool:
        """Record one request; False (and a log line) when the database refused it: a lost log line must
        never fail the request it describes."""
        try:
            with session_scope(self._db) as session:
                session.add(entry)
                session.commit()
        except (DatabaseBusy, SQLAlchemyError):
            log.exception("could not write the API log")
            return False
        return True

    def recent(self, user_id: str, limit: int = 50) -> list[ApiLog]:
        with read_scope(self._db) as session:
            return list(session.exec(select(ApiLog).where(ApiLog.user_id == user_id)
                                     .order_by(col(ApiLog.id).desc()).limit(limit)).all())

    def forget_older_than(self, days: int) -> int:
        """Remove rows older than ``days`` (0: keep everything); how many went."""
        if days <= 0:
            return 0
        with session_scope(self._db) as session:
            removed = session.exec(delete(ApiLog).where(col(ApiLog.created_at) < utcnow() - timedelta(days=days)))
            session.commit()
            return removed.rowcount
