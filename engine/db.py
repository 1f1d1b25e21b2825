"""Database engine and sessions (SQLModel; SQLite with WAL by default)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from engine import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from engine.errors import DatabaseBusy

SQLITE_BUSY_TIMEOUT_MS = 10_000


def make_engine(url: str, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        # One shared connection for an in-memory database, else every session sees an empty one.
        poolclass=StaticPool if in_memory else None,
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        # Let SQLAlchemy/pysqlite not open transactions implicitly, so BEGIN IMMEDIATE is ours to issue.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        # Every transaction takes the write lock when it begins. A check-then-change can't interleave with
        # another, and a read that turns into a write can't fail with SQLITE_BUSY halfway (WAL snapshot).
        # The price: transactions must stay short; none is held across a generation.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def init_db(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)


def is_busy(exc: OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED (extended codes included): another writer kept the lock too long."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session; a lock wait that outlasts the busy timeout becomes DatabaseBusy (a clean 503), not a crash."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
        except OperationalError as exc:
            if is_busy(exc):
                raise DatabaseBusy("the database is busy; retry shortly") from exc
            raise
