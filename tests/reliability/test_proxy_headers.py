"""Behind no proxy, X-Forwarded-For is a header like any other: a client can't pick the address the sign-in
throttle counts (uvicorn itself would believe it from any loopback client)."""

import httpx
import pytest

from tests.server_process import Server, server_env

pytestmark = pytest.mark.sqlite_pass_only  # the server picks its database (SQLite in its data dir)


@pytest.mark.parametrize(("trusted", "blocked"), [("", True), ("127.0.0.1", False)])
def test_forwarded_for_moves_the_count_only_behind_a_trusted_proxy(tmp_path, models_dir, trusted, blocked):
    env = server_env(tmp_path / "data", models_dir, IMAGESTUDIO_TRUSTED_PROXIES=trusted)
    server = Server(env, tmp_path / "server.log").start()
    try:
        statuses = [httpx.post(f"{server.base}/api/v1/auth/login", timeout=30,
                               headers={"X-Forwarded-For": f"198.51.100.{i}"},
                               json={"email": "admin@example.com", "password": f"guess-{i}"}).status_code
                    for i in range(6)]
    finally:
        server.stop()
    assert statuses[:5] == [401] * 5
    assert statuses[5] == (429 if blocked else 401)
