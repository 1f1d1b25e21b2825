"""SIGKILL the real server in the middle of an async generation job, start it again on the same data dir, and check
that nothing was lost or left half done: the job, kept as data, runs again after the restart and is charged once."""

import os
import signal
import sqlite3
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.server_process import Server, create_key, server_env

SLOW_JOB = {"prompt": "a slow lighthouse", "model": "tiny-sdxl", "width": 1024, "height": 1024, "steps": 20,
            "seed": 42, "async": True}  # about a second per step on two CPU cores: time to be killed mid-job


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, models_dir):
    """Two stored images, then a slow job killed mid-denoising, then a restart. Returns what was seen."""
    data_dir = tmp_path_factory.mktemp("crash") / "data"
    env = server_env(data_dir, models_dir)
    key = create_key(env, "pat@example.com", plan="pro")  # the Pro plan stores images
    auth = {"Authorization": f"Bearer {key}"}
    log = data_dir.parent / "server.log"
    seen: dict = {"data_dir": data_dir, "auth": auth}

    first = Server(env, log).start()
    try:
        with httpx.Client(base_url=first.base, headers=auth, timeout=60) as http:
            stored = []
            for prompt in ("a red barn", "a blue boat"):
                data = http.post("/api/v1/generate", json={"prompt": prompt, "width": 256, "height": 256}).json()
                stored.append((data["data"]["id"], http.get(f"/api/v1/images/{data['data']['id']}").content))
            seen["stored"] = stored
            seen["usage_before"] = http.get("/api/v1/usage").json()["data"]
            job_id = http.post("/api/v1/generate", json=SLOW_JOB).json()["data"]["job_id"]
            seen["job_id"] = job_id
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until the denoising loop is under way
                job = http.get(f"/api/v1/jobs/{job_id}").json()["data"]
                if job["status"] == "running" and (job.get("progress") or {}).get("step", 0) >= 1:
                    break
                time.sleep(0.1)
            else:
                pytest.fail(f"the job never got going: {job}")
            seen["usage_during"] = http.get("/api/v1/usage").json()["data"]
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.stop()

    # What a kill in the middle of a file write leaves behind (the store writes .name.tmp, then renames).
    month = datetime.now(UTC).strftime("%Y/%m")
    partial = data_dir / "images" / month / ".img_cut_short.png.tmp"
    partial.write_bytes(b"\x89PNG\r\n\x1a\n half")

    second = Server(env, log).start()
    try:
        with httpx.Client(base_url=second.base, headers=auth, timeout=60) as http:
            seen["job_on_restart"] = http.get(f"/api/v1/jobs/{job_id}").json()["data"]
            deadline = time.monotonic() + 120
            while (job := http.get(f"/api/v1/jobs/{job_id}").json()["data"])["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            seen["job_after"] = job
            seen["usage_after"] = http.get("/api/v1/usage").json()["data"]
            seen["images_after"] = [(image_id, http.get(f"/api/v1/images/{image_id}").content)
                                    for image_id, _ in stored]
            seen["new_generation"] = http.post("/api/v1/generate", json={"prompt": "after the crash", "width": 256,
                                                                         "height": 256}).status_code
            seen["listing"] = http.get("/api/v1/images").json()["data"]
        seen["db_check"] = integrity(data_dir / "imagestudio.db")
        seen["files"] = sorted(p.relative_to(data_dir / "images").as_posix()
                               for p in (data_dir / "images").rglob("*") if p.is_file())
        seen["records"] = file_records(data_dir / "imagestudio.db")
    finally:
        second.stop()
    return seen


def integrity(db_path) -> str:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def file_records(db_path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return sorted(row[0] for row in conn.execute("SELECT file_path FROM imagerecord WHERE file_path IS NOT NULL"))


def test_the_interrupted_async_job_runs_again_after_the_restart(crashed):
    assert crashed["job_on_restart"]["status"] in ("queued", "running")  # claimed at start-up, not failed
    job = crashed["job_after"]
    assert job["status"] == "succeeded", job
    assert job["result"]["seed"] == 42 and "/api/v1/images/" in job["result"]["image_url"]  # stored (Pro)


def test_stored_images_and_the_database_survive(crashed):
    assert crashed["db_check"] == "ok"
    assert crashed["images_after"] == crashed["stored"]  # byte for byte
    # The two from before, the resumed job's, and one made after the restart.
    assert crashed["listing"]["total"] == 4
    assert crashed["new_generation"] == 200


def test_no_half_written_or_unrecorded_file_is_left(crashed):
    files = crashed["files"]
    assert not [f for f in files if f.endswith(".tmp")]
    # Every image file has a record and every record its file: no half-written image anywhere.
    assert [f for f in files if f.endswith(".png")] == crashed["records"]
    assert not [f for f in files if not f.endswith(".png") and f != "secret_key"]


def test_the_interrupted_job_is_charged_once(crashed):
    before, during, after = crashed["usage_before"], crashed["usage_during"], crashed["usage_after"]
    assert during["credits"]["balance"] == before["credits"]["balance"] - 1  # reserved while it ran
    assert after["credits"]["balance"] == before["credits"]["balance"] - 1  # delivered after the restart, once
    today, then = after["usage"]["today"], before["usage"]["today"]
    assert today["imageCount"] == then["imageCount"] + 1 and today["requestCount"] == then["requestCount"] + 1
