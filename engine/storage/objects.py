"""Images in S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, SeaweedFS…), beside local disk.

``IMAGESTUDIO_STORAGE_URL=s3://bucket/prefix`` puts stored images under ``prefix/images/`` and the short-lived
copies of unstored results under ``prefix/results/``; the endpoint, region and credentials come from settings
(or boto3's own chain: ``AWS_*`` variables, an instance role). The classes here have the interfaces of
``ImageStore`` and ``ResultCache``, so the gallery, the jobs and the quotas work the same on either.

A PUT is atomic in S3 (a reader sees the whole object or none), so there are no temp files to clean up. An
unstored result's expiry is in its object metadata (``expires-at``), not in a file time: every API process
agrees on it, whatever its clock says about the object's upload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.storage.files import StorageError

EXPIRES_AT = "expires-at"  # metadata key of an unstored result: when it expires (Unix seconds)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "some/prefix" (no slash at either end)

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"storage URL must look like s3://bucket/prefix, not {url!r}")
        return cls(bucket=parts.netloc, prefix=parts.path.strip("/"))

    def key(self, *names: str) -> str:
        return "/".join(part for part in (self.prefix, *names) if part)


def s3_client(endpoint_url: str | None, region: str | None, access_key_id: str | None,
              secret_access_key: str | None, addressing_style: str = "auto"):
    """A boto3 S3 client. Path-style addressing (``endpoint/bucket/key``) by default with a custom endpoint:
    MinIO, SeaweedFS and servers on an address have no per-bucket host names."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise StorageError("IMAGESTUDIO_STORAGE_URL needs boto3: pip install -e \".[s3]\"") from exc

    style = addressing_style if addressing_style != "auto" else ("path" if endpoint_url else "virtual")
    config = Config(signature_version="s3v4", s3={"addressing_style": style},
                    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, config=config)


def _errors():
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


def _missing(exc) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("NoSuchKey", "404", "NotFound")


class S3ImageStore:
    """Stored images as objects ``prefix/images/YYYY/MM/img_….png``; the record keeps ``YYYY/MM/img_….png``."""

    def __init__(self, client, location: S3Location):
        self.client, self.location = client, location

    def _key(self, relative: str) -> str:
        if relative.startswith("/") or ".." in relative.split("/"):
            raise StorageError("image path outside the storage prefix")
        return self.location.key("images", relative)

    def save(self, image_id: str, data: bytes, when: str) -> str:
        relative = f"{when}/{image_id}.png"
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=self._key(relative), Body=data,
                                   ContentType="image/png")
        except _errors() as exc:
            raise StorageError(f"could not write the image to object storage: {_reason(exc)}") from exc
        return relative

    def read(self, relative: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.location.bucket, Key=self._key(relative))["Body"].read()
        except _errors() as exc:
            if _missing(exc):
                raise FileNotFoundError(relative) from exc  # as on disk: the gallery answers 404
            raise StorageError(f"could not read the image from object storage: {_reason(exc)}") from exc

    def delete(self, relative: str) -> None:
        try:
            self.client.delete_object(Bucket=self.location.bucket, Key=self._key(relative))
        except _errors() as exc:
            raise StorageError(f"could not delete the image from object storage: {_reason(exc)}") from exc

    def presigned_url(self, relative: str, ttl_s: int) -> str:
        """A link straight to the object, good for ``ttl_s`` (S3 allows a week at most)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.location.bucket, "Key": self._key(relative)},
            ExpiresIn=min(ttl_s, 7 * 86400))

    def writable(self) -> bool:
        probe = self.location.key(f".probe-{time.time_ns()}")
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=probe, Body=b"ok")
            self.client.delete_object(Bucket=self.location.bucket, Key=probe)
            return True
        except _errors():
            return False

    def remove_partial_files(self, dead=None, now: float | None = None) -> int:
        return 0  # a PUT is all or nothing: nothing half-written to clean up


class S3ResultCache:
    """Unstored results as objects ``prefix/results/job_….png`` with their expiry in the metadata (``folder``
    "inputs": an async job's input images, kept until it ends)."""

    def __init__(self, client, location: S3Location, ttl_s: float, folder: str = "results"):
        self.client, self.location, self.ttl_s, self.folder = client, location, ttl_s, folder

    def _key(self, job_id: str) -> str:
        if not job_id.replace("_", "").isalnum():
            raise StorageError("invalid job id")
        return self.location.key(self.folder, f"{job_id}.png")

    def put(self, job_id: str, png: bytes) -> None:
        expires = str(int(time.time() + self.ttl_s))
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=self._key(job_id), Body=png,
                                   ContentType="image/png", Metadata={EXPIRES_AT: expires})
        except _errors() as exc:
            raise StorageError(f"could not write the result to object storage: {_reason(exc)}") from exc

    def get(self, job_id: str) -> bytes | None:
        try:
            found = self.client.get_object(Bucket=self.location.bucket, Key=self._key(job_id))
        except _errors() as exc:
            if _missing(exc):
                return None
            raise StorageError(f"could not read the result from object storage: {_reason(exc)}") from exc
        if _expired(found.get("Metadata", {}), time.time()):
            return None
        return found["Body"].read()

    def delete(self, job_id: str) -> None:
        try:
            self.client.delete_object(Bucket=self.location.bucket, Key=self._key(job_id))
        except _errors() as exc:
            raise StorageError(f"could not delete the result from object storage: {_reason(exc)}") from exc

    def purge(self) -> int:
        """Delete expired results (by their metadata); returns how many."""
        now, expired = time.time(), []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.key(self.folder) + "/"):
            for item in page.get("Contents", []):
                try:
                    head = self.client.head_object(Bucket=self.location.bucket, Key=item["Key"])
                except _errors() as exc:
                    if _missing(exc):
                        continue  # deleted meanwhile
                    raise
                if _expired(head.get("Metadata", {}), now):
                    expired.append({"Key": item["Key"]})
        for start in range(0, len(expired), 1000):  # DeleteObjects takes 1000 keys at most
            self.client.delete_objects(Bucket=self.location.bucket,
                                       Delete={"Objects": expired[start:start + 1000], "Quiet": True})
        return len(expired)


def _expired(metadata: dict, now: float) -> bool:
    try:
        return float(metadata.get(EXPIRES_AT, "0")) < now
    except ValueError:
        return True  # not written by us: not served


def _reason(exc) -> str:
    """What went wrong, without the request's signature or the endpoint's internals."""
    error = getattr(exc, "response", {}).get("Error", {})
    return error.get("Code") or type(exc).__name__
