"""Images in S3-compatible storage: a real S3 API over HTTP on loopback (moto's standalone server), boto3 talking
to it as to AWS, MinIO or R2; no in-process patching.

The gallery tests of test_images_and_storage run here again with the bucket as the store (the ``settings``
fixture below replaces the default one for this module): listing, signed links, deletion and the quota work the
same as on disk.
"""

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from engine.config import Settings
from tests.api.helpers import SMALL, set_plan
from tests.api.test_images_and_storage import (  # noqa: F401  (run again here, against the bucket)
    test_full_storage_quota_falls_back_to_a_data_url,
    test_list_filter_info_and_delete,
    test_only_the_owner_or_a_signed_link_reads_an_image,
    test_storage_on_gives_a_hosted_url,
)
from tests.support import require, wait_until

BUCKET = "studio-images"
KEYS = {"s3_access_key_id": "test-key", "s3_secret_access_key": "test-secret", "s3_region": "eu-west-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server in its own process on a free loopback port."""
    require(importlib.util.find_spec("moto") is not None and importlib.util.find_spec("flask") is not None,
            "moto[server] (the test extra)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(endpoint + "/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(up, 30), log.read_text()[-2000:]
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def s3(endpoint: str):
    from engine.storage.objects import s3_client

    return s3_client(endpoint, KEYS["s3_region"], KEYS["s3_access_key_id"], KEYS["s3_secret_access_key"])


@pytest.fixture
def bucket(s3_endpoint) -> Iterator[str]:
    """A fresh, empty bucket per test."""
    client = s3(s3_endpoint)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": KEYS["s3_region"]})
    yield BUCKET
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def with_s3(settings: Settings, endpoint: str, bucket: str) -> Settings:
    from pydantic import SecretStr

    return settings.model_copy(update={"storage_url": f"s3://{bucket}/box-1", "s3_endpoint_url": endpoint,
                                       **KEYS, "s3_secret_access_key": SecretStr(KEYS["s3_secret_access_key"])})


@pytest.fixture
def settings(settings, s3_endpoint, bucket) -> Settings:
    return with_s3(settings, s3_endpoint, bucket)


def keys_in(endpoint: str) -> list[str]:
    listing = s3(endpoint).list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def generate(client, headers, **extra) -> dict:
    response = client.post("/api/v1/generate", json={"prompt": "a lighthouse", "model": "tiny-sd", **SMALL, **extra},
                           headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_stored_image_is_an_object_under_the_prefix(client, pro_auth, engine, s3_endpoint):
    data = generate(client, pro_auth)
    (key,) = keys_in(s3_endpoint)
    record = engine.gallery.get(data["id"], None)
    assert key == f"box-1/images/{record.file_path}" and key.endswith(f"/{data['id']}.png")
    stored = s3(s3_endpoint).get_object(Bucket=BUCKET, Key=key)
    assert stored["ContentType"] == "image/png"
    body = stored["Body"].read()
    assert client.get(f"/api/v1/images/{data['id']}", headers=pro_auth).content == body
    assert engine.health()["checks"]["storage"]["status"] == "ok"
    assert client.delete(f"/api/v1/images/{data['id']}", headers=pro_auth).status_code == 200
    assert keys_in(s3_endpoint) == []


def test_an_unstored_result_waits_in_the_bucket_with_its_expiry_in_metadata(client, auth, engine, s3_endpoint):
    response = client.post("/api/v1/generate", json={"prompt": "a fox", "model": "tiny-sd", "async": True, **SMALL},
                           headers=auth)
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["job_id"]
    assert wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"]["status"]
                      == "succeeded", 60)
    (key,) = keys_in(s3_endpoint)
    assert key == f"box-1/results/{job_id}.png"
    head = s3(s3_endpoint).head_object(Bucket=BUCKET, Key=key)
    expires = int(head["Metadata"]["expires-at"])
    assert abs(expires - (time.time() + engine.settings.result_ttl_minutes * 60)) < 120
    result = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"]["result"]
    assert result["image"].startswith("data:image/png;base64,") and not result["expired"]
    # Expired by its metadata (its upload time says nothing): not served, then purged; a fresh one stays.
    client_s3 = s3(s3_endpoint)
    client_s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": key},
                          Metadata={"expires-at": str(int(time.time()) - 1)}, MetadataDirective="REPLACE")
    engine.results.put("job_fresh", b"\x89PNG fresh")
    assert client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"]["result"]["expired"] is True
    assert engine.results.purge() == 1
    assert keys_in(s3_endpoint) == ["box-1/results/job_fresh.png"]
    assert engine.results.get("job_fresh") == b"\x89PNG fresh"


def test_presigned_links_point_at_the_objects(engine, pro_auth, s3_endpoint):
    from fastapi.testclient import TestClient

    from api.app import create_app

    engine.settings.hosted_links = "presigned"
    with TestClient(create_app(engine=engine, with_studio=False)) as client:
        data = generate(client, pro_auth)
        assert data["image_url"].startswith(f"{s3_endpoint}/{BUCKET}/box-1/images/")
        assert "X-Amz-Signature=" in data["image_url"]
        fetched = httpx.get(data["image_url"])  # straight from the storage, no key, no API
        assert fetched.status_code == 200
        assert fetched.content == client.get(f"/api/v1/images/{data['id']}", headers=pro_auth).content
        job = client.post("/api/v1/generate", json={"prompt": "a fox", "model": "tiny-sd", "async": True, **SMALL},
                          headers=pro_auth).json()["data"]
        assert wait_until(lambda: client.get(f"/api/v1/jobs/{job['job_id']}", headers=pro_auth)
                          .json()["data"]["status"] == "succeeded", 60)
        result = client.get(f"/api/v1/jobs/{job['job_id']}", headers=pro_auth).json()["data"]["result"]
        assert result["image_url"].startswith(f"{s3_endpoint}/{BUCKET}/")


def test_a_missing_bucket_is_a_failing_health_check_and_a_clear_error(engine, user_and_key, s3_endpoint):
    from engine.errors import EngineError
    from engine.generation.params import GenerationParams

    s3(s3_endpoint).delete_bucket(Bucket=BUCKET)
    try:
        assert engine.health()["checks"]["storage"]["status"] == "error"
        set_plan(engine, user_and_key[0], storage_enabled=True, storage_quota_mb=100)
        with pytest.raises(EngineError, match="could not write the image to object storage: NoSuchBucket"):
            engine.generate(user_and_key[0], GenerationParams(prompt="x", model="tiny-sd", **SMALL), store=True)
    finally:
        s3(s3_endpoint).create_bucket(Bucket=BUCKET,
                                      CreateBucketConfiguration={"LocationConstraint": KEYS["s3_region"]})


def test_storage_settings_are_checked_at_start(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="s3://bucket/prefix"):
        Settings(_env_file=None, data_dir=tmp_path, storage_url="https://example.com/bucket")
    with pytest.raises(ValidationError, match="presigned needs storage_url"):
        Settings(_env_file=None, data_dir=tmp_path, hosted_links="presigned")
    parsed = Settings(_env_file=None, data_dir=tmp_path, storage_url="s3://photos/a/b/")
    from engine.storage.objects import S3Location

    assert S3Location.parse(parsed.storage_url) == S3Location("photos", "a/b")
