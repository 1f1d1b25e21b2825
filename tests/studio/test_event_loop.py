"""Nothing the studio does blocks the event loop that serves every browser: database and file calls run in threads."""

import asyncio
import threading
import time

import pytest
from sqlalchemy import event

from tests.studio.conftest import ADMIN_EMAIL, USER_EMAIL, sign_in

pytestmark = pytest.mark.anyio

PAGES = [("/", "prompt"), ("/gallery", "gallery-total"), ("/keys", "key-list"), ("/usage", "usage-chart"),
         ("/settings", "save-preferences")]


class Ticker:
    """Ticks every 20 ms on the event loop; the longest gap between ticks is how long the loop was held."""

    def __init__(self):
        self.gaps: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            self.gaps.append(now - last)
            last = now

    def __enter__(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_):
        self._task.cancel()


async def test_a_slow_database_does_not_hold_the_loop_while_pages_load(user, engine, member_account, monkeypatch):
    await sign_in(user, USER_EMAIL)
    loop_thread = threading.get_ident()
    real_active_user = engine.accounts.active_user
    threads = []

    def slow_active_user(user_id: str):  # every page load reads its user again
        threads.append(threading.get_ident())
        time.sleep(0.5)
        return real_active_user(user_id)

    monkeypatch.setattr(engine.accounts, "active_user", slow_active_user)
    for path, marker in PAGES:
        threads.clear()
        with Ticker() as ticker:
            await user.open(path)
            await user.should_see(marker=marker)
        assert threads and loop_thread not in threads, path
        # 0.5 s in the thread; the loop went on ticking meanwhile (a blocked loop shows a gap of 0.5 s or more)
        assert len(ticker.gaps) >= 10, path
        assert max(ticker.gaps) < 0.3, (path, max(ticker.gaps))


async def test_no_page_runs_sql_on_the_event_loop(user, engine, admin_account, member_account):
    loop_thread = threading.get_ident()
    on_loop: list[str] = []

    def check(_conn, _cursor, statement, *_):
        if threading.get_ident() == loop_thread:
            on_loop.append(statement.split("\n")[0][:120])

    await sign_in(user, ADMIN_EMAIL)
    event.listen(engine.db, "before_cursor_execute", check)
    try:
        for path, marker in [*PAGES, ("/admin", "tab-users"), ("/login", "page-title")]:
            await user.open(path)
            await user.should_see(marker=marker)  # a signed-in user's /login goes on to Generate
        # An action too: a handler re-checks the admin and saves, then the list is drawn again.
        await user.open("/admin")
        user.find(marker=f"suspend-{USER_EMAIL}").click()
        await user.should_see("Suspended: its API keys and generations are refused.", retries=20)
    finally:
        event.remove(engine.db, "before_cursor_execute", check)
    assert on_loop == []
