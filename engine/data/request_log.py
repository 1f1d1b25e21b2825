"""The API request log: one row per /api request (time, key prefix, endpoint, status, duration, credits).

Rows are written in batches by a thread of their own: a transaction per request made every request wait its
turn for the database's write lock (on SQLite, one writer at a time), which cost a third of the requests/s
of a cheap endpoint at 16 clients. A row reaches the database within ``FLUSH_INTERVAL_S``; reading the log
flushes first, so a caller always sees its own requests. A crash loses at most the rows of that interval.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, delete, select

from engine.data.db import read_scope, session_scope
from engine.data.tables import ApiLog, utcnow
from engine.errors import DatabaseBusy

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 500
MAX_PENDING = 50_000  # past this (a database down for long), new rows are dropped, and said so, not hoarded


class RequestLog:
    def __init__(self, db):
        self._db = db
        self._pending: queue.Queue[ApiLog] = queue.Queue(maxsize=MAX_PENDING)
        self._written = threading.Condition()
        self._accepted = self._flushed = 0  # rows taken, rows written (or given up on)
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closing = threading.Event()

    def write(self, entry: ApiLog) -> bool:
        """Queue one request's row (never blocks); False when the queue is full. A lost log line must never
        fail, nor slow down, the request it describes."""
        self._ensure_writer()
        try:
            self._pending.put_nowait(entry)
        except queue.Full:
            log.error("API log: %d rows waiting for the database; this one is dropped", MAX_PENDING)
            return False
        with self._written:
            self._accepted += 1
        return True

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row queued so far is written."""
        with self._written:
            target = self._accepted
            self._written.wait_for(lambda: self._flushed >= target, timeout=timeout)

    def close(self) -> None:
        self.flush()
        self._closing.set()
        if self._writer:
            self._writer.join(FLUSH_INTERVAL_S + 5)

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            with self._start_lock:
                if self._writer is None or not self._writer.is_alive():
                    self._closing.clear()
                    self._writer = threading.Thread(target=self._write_loop, name="imagestudio-api-log",
                                                    daemon=True)
                    self._writer.start()

    def _write_loop(self) -> None:
        while not self._closing.is_set():
            try:
                batch = [self._pending.get(timeout=FLUSH_INTERVAL_S)]
            except queue.Empty:
                continue
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            self._write_batch(batch)
            with self._written:
                self._flushed += len(batch)
                self._written.notify_all()

    def _write_batch(self, batch: list[ApiLog]) -> None:
        for attempt in range(3):
            try:
                with session_scope(self._db) as session:
                    session.add_all(batch)
                    session.commit()
                return
            except (DatabaseBusy, SQLAlchemyError):
                if attempt == 2:
                    log.exception("API log: %d rows could not be written and are lost", len(batch))
                    return
                self._closing.wait(0.5 * (attempt + 1))

    def recent(self, user_id: str, limit: int = 50) -> list[ApiLog]:
        self.flush()
        with read_scope(self._db) as session:
            return list(session.exec(select(ApiLog).where(ApiLog.user_id == user_id)
                                     .order_by(col(ApiLog.id).desc()).limit(limit)).all())

    def forget_older_than(self, days: int) -> int:
        """Remove rows older than ``days`` (0: keep everything); how many went."""
        if days <= 0:
            return 0
        self.flush()
        with session_scope(self._db) as session:
            removed = session.exec(delete(ApiLog).where(col(ApiLog.created_at) < utcnow() - timedelta(days=days)))
            session.commit()
            return removed.rowcount
