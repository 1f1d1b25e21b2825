"""NiceGUI's simulated ``user`` for the studio, on the real app (``create_app`` + ``ui.run_with``).

NiceGUI's own ``user`` fixture (``nicegui.testing.user_plugin``) runs a main file; the studio is
mounted by ``create_app`` on an engine built from the test's settings instead, so this fixture does
what the plugin's ``user_simulation`` does with that app. Tests are async (anyio, asyncio backend).
"""

import functools
import gc
import os
from collections.abc import AsyncIterator

import argon2
import httpx
import pytest
from nicegui import Client, core, ui
from nicegui.functions.download import download
from nicegui.functions.navigate import Navigate
from nicegui.functions.notify import notify
from nicegui.testing.general import nicegui_reset_globals
from nicegui.testing.user import User

from api.app import create_app
from engine.accounts import users as accounts
from engine.accounts.admin import create_account, create_first_admin
from engine.data.db import session_scope

ADMIN_EMAIL, USER_EMAIL, PASSWORD = "ada@example.com", "bob@example.com", "correct horse battery"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _quick_gc(models_dir):
    """NiceGUI's per-test reset runs gc.collect() twice; with torch and diffusers in memory each takes
    ~0.4 s. Freezing what exists now (imports, the tiny models) makes later collections scan only new objects."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _quick_passwords(monkeypatch):
    """Argon2 at its real cost takes ~0.15 s a hash; these tests hash and check many passwords."""
    monkeypatch.setattr(argon2, "PasswordHasher",
                        functools.partial(argon2.PasswordHasher, time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(accounts, "_DUMMY_HASH", [])  # a cheap dummy hash must not outlive these tests


@pytest.fixture
async def user(engine, caplog) -> AsyncIterator[User]:
    with nicegui_reset_globals():
        os.environ["NICEGUI_USER_SIMULATION"] = "true"
        try:
            fastapi_app = create_app(engine=engine, with_studio=True)
            async with core.app.router.lifespan_context(core.app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(core.app),
                                             base_url="http://test") as client:
                    # A browser has its session cookie before a page's script navigates anywhere; the
                    # simulation starts the next page while the first response is still on its way.
                    await client.get("/favicon.ico")
                    simulated = User(client)
                    simulated.fastapi_app = fastapi_app  # for the `api` fixture
                    yield simulated
                    # Python 3.11's wait_for can swallow a cancel; a stopped outbox ends its loop anyway,
                    # instead of holding the shutdown for NiceGUI's 2 s cancel timeout.
                    for open_client in list(Client.instances.values()):
                        open_client.outbox.stop()
        finally:
            os.environ.pop("NICEGUI_USER_SIMULATION", None)
            ui.navigate, ui.notify, ui.download = Navigate(), notify, download
    errors = [r for r in caplog.get_records("call") if r.levelname == "ERROR"]
    if errors:
        pytest.fail("unexpected ERROR logs: " + "; ".join(r.getMessage() for r in errors), pytrace=False)


@pytest.fixture
async def api(user) -> AsyncIterator[httpx.AsyncClient]:
    """The same app's REST API, for checking what the studio changed."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(user.fastapi_app), base_url="http://test") as client:
        yield client


@pytest.fixture
def admin_account(engine):
    with session_scope(engine.db) as session:
        return create_first_admin(session, ADMIN_EMAIL, PASSWORD, "Ada")


@pytest.fixture
def member_account(engine, admin_account):
    """A non-admin on the Pro plan (storage on, so the gallery fills)."""
    with session_scope(engine.db) as session:
        return create_account(session, USER_EMAIL, PASSWORD, name="Bob", plan_slug="pro")


async def sign_in(user: User, email: str, password: str = PASSWORD, path: str = "/login") -> None:
    await user.open(path)
    user.find(marker="email").type(email)
    user.find(marker="password").type(password)
    user.find(marker="sign-in").click()
    await user.should_see(marker="page-title", retries=30)


def set_value(user: User, marker: str, value) -> None:
    """Set a field's value the way a user's pick or entry would (selects, numbers, switches)."""
    with user:
        for element in user.find(marker=marker).elements:
            element.value = value


def value_of(user: User, marker: str):
    (element,) = user.find(marker=marker).elements
    return element.value


async def eventually(check, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true (handlers run as tasks, after the click returns)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def count(user: User, marker: str) -> int:
    """How many visible elements carry ``marker`` (``user.find`` insists on at least one)."""
    from nicegui import ElementFilter

    with user:
        return len(list(ElementFilter(marker=marker, local_scope=False, only_visible=True)))


def submit_held(engine, user, prompt: str, release):
    """A job of ``user`` (its row, as the engine writes one) that runs on the worker until ``release`` is set:
    what another tab's long job looks like."""
    from engine.data.leases import LEASE
    from engine.data.tables import Job, utcnow
    from engine.generation.worker import Task

    row = Job(user_id=user.id, kind="generate", params={"prompt": prompt, "model": "tiny-sd"},
              process_id=engine.identity.id, lease_expires_at=utcnow() + LEASE)
    with session_scope(engine.db) as session:
        session.add(row)
        session.commit()
    return engine.worker.submit(Task(id=row.id, owner=user.id, run=lambda task: release.wait(60)))
