"""Past one box, for real: a Ray cluster started with `ray start --head` on loopback, PostgreSQL, an S3 server
over HTTP (moto's), and two API processes with IMAGESTUDIO_WORKER=ray. A job's progress and cancel from the API
process that did not accept it; SIGKILL of the process that accepted an async job: the other claims it from its
row, runs it through Ray and serves it, charged once."""

import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.api.test_object_storage import BUCKET, KEYS, bucket, keys_in, s3_endpoint  # noqa: F401  (fixtures)
from tests.reliability.test_two_processes import wait_for_job, wait_until_running
from tests.server_process import Server, create_key, free_port, server_env
from tests.support import fresh_postgres_url, require, wait_until

pytestmark = pytest.mark.sqlite_pass_only  # it picks its database itself

SLOW = {"prompt": "a slow harbour", "model": "tiny-sdxl", "width": 1024, "height": 1024, "steps": 12,
        "async": True}
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a throwaway cluster on loopback


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory) -> Iterator[str]:
    """`ray start --head --block` in a process group of its own (stopping it stops only this cluster)."""
    require(importlib.util.find_spec("ray") is not None, "Ray Serve (the test extra: ray[serve])")
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    log = temp.parent / "ray-head.log"
    with open(log, "wb") as out:
        head = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port",
                                 str(port), "--num-cpus", "2", "--include-dashboard", "false", "--temp-dir",
                                 str(temp), "--disable-usage-stats"], env=os.environ | RAY_ENV, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until(lambda: head.poll() is None and b"Ray runtime started" in log.read_bytes(), 180), \
            log.read_text()[-3000:]
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(ray_head, s3_endpoint, tmp_path_factory, models_dir) -> Iterator[SimpleNamespace]:  # noqa: F811
    from engine.storage.objects import s3_client

    client = s3_client(s3_endpoint, KEYS["s3_region"], KEYS["s3_access_key_id"], KEYS["s3_secret_access_key"])
    name = f"ray-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": KEYS["s3_region"]})
    folder = tmp_path_factory.mktemp("ray-api")
    with fresh_postgres_url() as url:
        env = server_env(folder / "data", models_dir, IMAGESTUDIO_DATABASE_URL=url, IMAGESTUDIO_WORKER="ray",
                         IMAGESTUDIO_RAY_ADDRESS=ray_head, IMAGESTUDIO_RAY_NUM_CPUS="1",
                         IMAGESTUDIO_STORAGE_URL=f"s3://{name}/cluster", IMAGESTUDIO_S3_ENDPOINT_URL=s3_endpoint,
                         **{f"IMAGESTUDIO_{key.upper()}": value for key, value in KEYS.items()}, **RAY_ENV)
        first = Server(env, folder / "first.log").start()
        second = Server(env, folder / "second.log").start()
        key = create_key(env, "ray@example.com", plan="pro")
        try:
            yield SimpleNamespace(env=env, first=first, second=second, folder=folder, s3=client, bucket=name,
                                  auth={"Authorization": f"Bearer {key}"})
        finally:
            second.stop()
            first.stop()


def balance(server, auth) -> int:
    return httpx.get(f"{server.base}/api/v1/usage", headers=auth, timeout=30).json()["data"]["credits"]["balance"]


def objects(cluster) -> list[str]:
    listing = cluster.s3.list_objects_v2(Bucket=cluster.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_progress_and_cancel_through_ray_from_the_other_process(cluster):
    before = balance(cluster.second, cluster.auth)
    job_id = httpx.post(f"{cluster.first.base}/api/v1/generate", json=SLOW | {"steps": 40}, headers=cluster.auth,
                        timeout=60).json()["data"]["job_id"]
    job = wait_until_running(cluster.second, cluster.auth, job_id, timeout=180)
    assert job["progress"]["total"] == 40
    assert httpx.delete(f"{cluster.second.base}/api/v1/jobs/{job_id}", headers=cluster.auth,
                        timeout=30).status_code == 200
    assert wait_for_job(cluster.second, cluster.auth, job_id)["status"] == "cancelled"
    assert balance(cluster.second, cluster.auth) == before  # refunded


def test_an_async_job_outlives_the_api_process_that_accepted_it(cluster):
    before = balance(cluster.second, cluster.auth)
    doomed = Server(cluster.env, cluster.folder / "doomed.log").start()
    try:
        job_id = httpx.post(f"{doomed.base}/api/v1/generate", json=SLOW | {"seed": 77}, headers=cluster.auth,
                            timeout=60).json()["data"]["job_id"]
        wait_until_running(cluster.second, cluster.auth, job_id, timeout=180)
        os.kill(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(10)
    finally:
        doomed.stop()
    job = wait_for_job(cluster.second, cluster.auth, job_id, timeout=240)
    assert job["status"] == "succeeded", job
    assert job["result"]["seed"] == 77
    fetched = httpx.get(job["result"]["image_url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")
    assert [key for key in objects(cluster) if key.startswith("cluster/images/")]  # stored in the bucket
    assert balance(cluster.second, cluster.auth) == before - 1  # charged once
    sync = httpx.post(f"{cluster.first.base}/api/v1/generate", json={"prompt": "after", "model": "tiny-sd",
                                                                    "width": 256, "height": 256},
                      headers=cluster.auth, timeout=120)
    assert sync.status_code == 200, sync.text
