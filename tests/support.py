"""Test helpers that need no fixtures: tools and services a test requires, fresh PostgreSQL databases."""

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

POSTGRES_SERVER_URL = os.environ.get("IMAGESTUDIO_TEST_POSTGRES_URL", "")


def require(available: bool, what: str) -> None:
    """A test that needs a tool or service: skipped where it is missing, but a failure in CI (CI=true), where
    .ci/run installs everything and a silent skip would hide a broken install."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must provide {what}")
    pytest.skip(f"needs {what}")


@contextmanager
def fresh_postgres_url() -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped afterwards."""
    require(bool(POSTGRES_SERVER_URL), "a PostgreSQL server in IMAGESTUDIO_TEST_POSTGRES_URL")
    name = f"imagestudio_test_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, query = POSTGRES_SERVER_URL.partition("?")
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_until(condition, timeout: float = 30.0) -> bool:
    """Poll ``condition`` every 50 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
