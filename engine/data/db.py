"""Database engine and sessions (SQLModel; SQLite with WAL by default)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

from engine.data import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from engine.errors import DatabaseBusy

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_POOL_SIZE = 40
POSTGRES_POOL_SIZE = 20
_READ_ONLY = "imagestudio_read_only"


def make_engine(url: str, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    if not url.startswith("sqlite"):
        # Kept open for the request threads rather than reconnected per use (a PostgreSQL connection costs a
        # fork and an authentication); two processes stay well under PostgreSQL's default 100 connections.
        return create_engine(url, pool_pre_ping=True, pool_size=POSTGRES_POOL_SIZE, max_overflow=POSTGRES_POOL_SIZE)
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        # One shared connection for an in-memory database, else every session sees an empty one.
        poolclass=StaticPool if in_memory else None,
        # Requests run their database calls on up to 40 threads (AnyIO's pool): connections beyond the pool
        # are closed after each use, and each new one pays its PRAGMAs (WAL mode among them) again.
        **({} if in_memory else {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_POOL_SIZE}),
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
        # A transaction that may write takes the write lock when it begins: a check-then-change can't interleave
        # with another, and a read that turns into a write can't fail with SQLITE_BUSY halfway (WAL snapshot).
        # The price: they must stay short; none is held across a generation. A read_scope's transaction only
        # reads: it takes no lock and sees the last commit, so reads never wait behind a writer.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


def init_db(engine: Engine) -> None:
    """The schema at its newest revision (Alembic migrations; see engine/data/schema.py)."""
    from engine.data.schema import upgrade

    upgrade(engine)


# PostgreSQL's "retry me" errors: serialization failure, deadlock detected, lock not available.
_POSTGRES_RETRYABLE = {"40001", "40P01", "55P03"}


def is_busy(exc: OperationalError) -> bool:
    """Another writer kept a lock too long (SQLITE_BUSY / SQLITE_LOCKED, extended codes included), or PostgreSQL
    gave this transaction up to let others go on: either way the request may simply be retried."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return getattr(exc.orig, "sqlstate", None) in _POSTGRES_RETRYABLE


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


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A session that only reads (on SQLite its transaction takes no write lock; writing in it is a bug)."""
    with session_scope(engine.execution_options(**{_READ_ONLY: True})) as session:
        yield session


def insert_if_absent(session: Session, model, conflict_on: str | tuple[str, ...], **values) -> bool:
    """INSERT … ON CONFLICT (conflict_on) DO NOTHING: one statement, so racing processes can't collide on a key.
    True when the row was inserted."""
    insert = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}[session.get_bind().dialect.name]
    columns = [conflict_on] if isinstance(conflict_on, str) else list(conflict_on)
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=columns)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT.
    return session.exec(statement.returning(getattr(model, columns[0]))).first() is not None


def serialize(session: Session, name: str) -> None:
    """Make this transaction the only one holding ``name`` until it ends, across processes. On SQLite every
    transaction already holds the database's write lock; on PostgreSQL this takes an advisory lock."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.exec(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=key))
