"""The Ray Serve worker (IMAGESTUDIO_WORKER=ray) on a local Ray instance with 2 CPUs, the pipelines on CPU
replicas: the same bytes as in-process, sync, async and batch requests through the API with the images in S3
(moto's server over HTTP), progress and cancel, and a replica killed mid-job. Two API processes on one Ray
cluster: tests/reliability/test_ray_cluster.py."""

import importlib.util
import os
import signal
import time

import pytest

from engine.generation.params import GenerationParams
from tests.api.helpers import SMALL, set_plan, set_workspace
from tests.api.test_object_storage import bucket, keys_in, s3_endpoint, with_s3  # noqa: F401  (fixtures)
from tests.conftest import make_user
from tests.support import require, wait_until

pytestmark = pytest.mark.sqlite_pass_only  # the replicas touch no database: once is enough


@pytest.fixture(scope="module")
def ray_instance():
    require(importlib.util.find_spec("ray") is not None, "Ray Serve (the test extra: ray[serve])")
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="imagestudio")
    yield ray
    serve.shutdown()
    ray.shutdown()


@pytest.fixture
def settings(settings, s3_endpoint, bucket, ray_instance):  # noqa: F811
    """The usual test settings, with images in the bucket and the pipelines on Ray."""
    return with_s3(settings, s3_endpoint, bucket).model_copy(update={"worker": "ray", "cpu_threads": 2,
                                                                     "ray_num_cpus": 1})


def test_the_same_seed_gives_the_same_bytes_through_ray_and_in_process(engine, settings):
    from engine.service import ImageEngine

    user, _ = make_user(engine, "same@example.com")
    params = GenerationParams(prompt="a lighthouse at dusk", model="tiny-sd", seed=1234, **SMALL)
    through_ray = engine.generate(user, params, store=False).png
    local = ImageEngine(settings.model_copy(update={"worker": "local"}), db=engine.db)
    local.start()
    try:
        assert local.generate(user, params, store=False).png == through_ray
    finally:
        local.stop()


def test_sync_async_and_batch_through_ray_land_in_s3(client, pro_auth, s3_endpoint):  # noqa: F811
    sync = client.post("/api/v1/generate", json={"prompt": "a red barn", "model": "tiny-sd", **SMALL},
                       headers=pro_auth)
    assert sync.status_code == 200, sync.text
    accepted = client.post("/api/v1/generate", json={"prompt": "a red barn", "model": "tiny-sd", "async": True,
                                                     **SMALL}, headers=pro_auth)
    assert accepted.status_code == 202
    job_id = accepted.json()["data"]["job_id"]
    batch = client.post("/api/v1/generate", json={"items": [{"prompt": f"boat {i}", "seed": i} for i in range(3)],
                                                  "model": "tiny-sd", **SMALL}, headers=pro_auth)
    assert batch.status_code == 200, batch.text
    assert [item["success"] for item in batch.json()["data"]["results"]] == [True] * 3
    assert wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}", headers=pro_auth).json()["data"]["status"]
                      == "succeeded", 60)
    images = [key for key in keys_in(s3_endpoint) if "/images/" in key]
    assert len(images) == 5  # sync, async and the batch's three: all stored in the bucket
    listed = client.get("/api/v1/images", headers=pro_auth).json()["data"]
    assert listed["total"] == 5


def test_progress_and_cancel_reach_the_replica(client, engine, pro_auth):
    slow = {"prompt": "a slow mill", "model": "tiny-sdxl", "width": 1024, "height": 1024, "steps": 40,
            "async": True}
    job_id = client.post("/api/v1/generate", json=slow, headers=pro_auth).json()["data"]["job_id"]

    def step() -> int:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=pro_auth).json()["data"]
        return (job.get("progress") or {}).get("step", 0) if job["status"] == "running" else 0

    assert wait_until(lambda: step() >= 1, 90)
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=pro_auth).status_code == 200
    assert wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}", headers=pro_auth).json()["data"]["status"]
                      == "cancelled", 30)
    assert step() < slow["steps"]


def test_a_replica_killed_mid_job_is_retried_and_charged_once(engine, ray_instance):
    user, _ = make_user(engine, "kill@example.com")
    set_plan(engine, user, monthly_credits=0)
    set_workspace(engine, user, credits=10)
    admission = engine.meter.admit(user.workspace_id, requests=1, credits=1)
    params = GenerationParams(prompt="a slow tower", model="tiny-sdxl", width=1024, height=1024, steps=12, seed=9)
    task = engine.submit_generation(user, params, store=False, charge_id=admission.charge_id, cost=1)
    assert wait_until(lambda: task.step >= 1, 90)
    pids = ray_instance.get(engine.worker.board.replica_pids.remote())
    assert pids
    for pid in set(pids.values()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # an earlier replica, already replaced
    deadline = time.monotonic() + 180
    while not task.future.done():
        assert time.monotonic() < deadline, "the job neither finished nor failed"
        time.sleep(0.2)
    assert task.future.exception() is None  # sent again to the replica Serve started in its place
    admission.succeeded(images=1, credits=1)
    engine.meter.settle(admission)
    from engine.data.db import session_scope
    from engine.data.tables import Workspace

    with session_scope(engine.db) as session:
        credits = session.get(Workspace, user.workspace_id).credits
    assert credits == 9  # charged once


def test_the_shipped_serve_config_is_valid_and_builds_each_application(ray_instance):
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema

    from engine.generation.ray_worker import build_app

    config = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "ray-serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(config)
    assert [app.name for app in schema.applications] == ["imagestudio-flux", "imagestudio-sdxl", "imagestudio-sd"]
    for app in config["applications"]:
        assert build_app(app["args"]) is not None
