"""A synchronous request whose client hangs up is cancelled (queued: at once; running: at its next step) and,
never delivered, not charged. Against the real server, where a hang-up is a closed socket."""

import sqlite3
import threading
import time

import httpx
import pytest

from tests.server_process import Server, create_key, server_env

pytestmark = pytest.mark.sqlite_pass_only  # the server picks its database (SQLite in its data dir)

SLOW = {"prompt": "a slow lighthouse", "model": "tiny-sdxl", "width": 1024, "height": 1024, "steps": 50}


def job_states(db_path) -> list[tuple[str, str]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT json_extract(params, '$.prompt'), status FROM job ORDER BY created_at").fetchall()


def test_hung_up_requests_are_cancelled_and_refunded(tmp_path, models_dir):
    data_dir = tmp_path / "data"
    env = server_env(data_dir, models_dir)
    auth = {"Authorization": f"Bearer {create_key(env, 'pat@example.com', plan='pro')}"}
    server = Server(env, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.base, headers=auth, timeout=30) as http:
            before = http.get("/api/v1/usage").json()["data"]

        def hang_up(prompt: str) -> None:
            try:  # the client gives up after a second and closes its connection
                httpx.post(f"{server.base}/api/v1/generate", json=SLOW | {"prompt": prompt}, headers=auth, timeout=1.5)
            except httpx.TimeoutException:
                pass

        runner = threading.Thread(target=hang_up, args=("running",))
        runner.start()
        time.sleep(0.5)  # the second queues behind the first (one pipeline call at a time)
        hang_up("queued")
        runner.join()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = dict(job_states(data_dir / "imagestudio.db"))
            if states.get("running") in ("cancelled", "failed", "succeeded") and states.get("queued") != "queued":
                break
            time.sleep(0.2)
        assert states == {"running": "cancelled", "queued": "cancelled"}
        with httpx.Client(base_url=server.base, headers=auth, timeout=30) as http:
            after = http.get("/api/v1/usage").json()["data"]
            logs = http.get("/api/v1/logs").json()["data"]["logs"]
        assert after["credits"]["balance"] == before["credits"]["balance"]
        assert after["usage"]["today"]["requestCount"] == before["usage"]["today"]["requestCount"]
        assert [entry["status"] for entry in logs if entry["endpoint"] == "/api/v1/generate"] == [499, 499]
    finally:
        server.stop()
