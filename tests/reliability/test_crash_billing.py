"""SIGKILL the real server during a burst of parallel stored generations, five times, and after each restart
check the books: every billed request is an image that was delivered, stored or not, and nothing else."""

import os
import signal
import sqlite3
import threading
import time

import httpx
import pytest

from tests.server_process import Server, create_key, server_env

pytestmark = pytest.mark.sqlite_pass_only  # the server picks its database (SQLite in its data dir)

BURST = 24
ROUNDS = 5
JOB = {"prompt": "a burst of boats", "model": "tiny-sd", "width": 256, "height": 256}


def books(db_path, workspace_email: str) -> dict:
    with sqlite3.connect(db_path) as conn:
        workspace = conn.execute("SELECT u.workspace_id FROM user u WHERE u.email = ?",
                                 (workspace_email,)).fetchone()[0]
        day = conn.execute("SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(images), 0), COALESCE(SUM(credits), 0) "
                           "FROM usagecounter WHERE workspace_id = ? AND \"window\" = 'day'", (workspace,)).fetchone()
        images = conn.execute("SELECT COUNT(*), COUNT(file_path) FROM imagerecord WHERE workspace_id = ?",
                              (workspace,)).fetchone()
        pending = conn.execute("SELECT COUNT(*) FROM pendingcharge").fetchone()[0]
        files = conn.execute("SELECT file_path FROM imagerecord WHERE file_path IS NOT NULL").fetchall()
    return {"requests": day[0], "images_counted": day[1], "credits": day[2], "records": images[0],
            "stored": images[1], "pending": pending, "files": [f[0] for f in files]}


def burst(base: str, auth: dict, done: list) -> None:
    def one():
        try:
            response = httpx.post(f"{base}/api/v1/generate", json=JOB, headers=auth, timeout=120)
            done.append(response.status_code)
        except httpx.HTTPError:
            done.append(None)  # cut off by the kill

    for _ in range(BURST):
        threading.Thread(target=one, daemon=True).start()


def test_billed_requests_equal_delivered_images_after_each_crash(tmp_path, models_dir):
    data_dir = tmp_path / "data"
    env = server_env(data_dir, models_dir, IMAGESTUDIO_MAX_BATCH="4")
    key = create_key(env, "pat@example.com", plan="studio")  # stores images; room for the burst
    auth = {"Authorization": f"Bearer {key}"}
    log = tmp_path / "server.log"
    seen = []
    for round_ in range(ROUNDS):
        server = Server(env, log).start()
        try:
            if round_:  # the restart recovered the last round's abandoned charges
                seen.append(books(data_dir / "imagestudio.db", "pat@example.com"))
            done: list = []
            burst(server.base, auth, done)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sum(1 for s in done if s == 200) < 2 + round_:
                time.sleep(0.02)
            os.kill(server.proc.pid, signal.SIGKILL)  # mid-burst: some delivered, some running, some queued
            server.proc.wait(10)
        finally:
            server.stop()
    server = Server(env, log).start()
    server.stop()
    seen.append(books(data_dir / "imagestudio.db", "pat@example.com"))
    for round_, state in enumerate(seen):
        assert state["pending"] == 0, (round_, state)
        assert state["requests"] == state["records"] == state["images_counted"], (round_, state)
        assert state["credits"] == state["records"], (round_, state)  # tiny-sd: 1 credit an image
        assert state["stored"] == state["records"]  # the plan stores every image
        for relative in state["files"]:
            assert (data_dir / "images" / relative).is_file()
    assert seen[-1]["records"] >= 2 * ROUNDS  # the kills really came after deliveries
