import os
import time

import pytest

from engine.results import ResultCache
from engine.storage import StorageError


def test_put_get_expire_and_purge(tmp_path):
    cache = ResultCache(tmp_path / "results", ttl_s=60)
    assert cache.get("job_1") is None and cache.purge() == 0
    cache.put("job_1", b"png-1")
    cache.put("job_2", b"png-2")
    assert cache.get("job_1") == b"png-1"
    old = time.time() - 61
    os.utime(cache.root / "job_1.png", (old, old))
    assert cache.get("job_1") is None and cache.get("job_2") == b"png-2"
    assert cache.purge() == 1
    cache.delete("job_2")
    assert list(cache.root.iterdir()) == []


def test_ids_cannot_leave_the_folder(tmp_path):
    cache = ResultCache(tmp_path, ttl_s=60)
    with pytest.raises(StorageError):
        cache.put("../escape", b"x")


def test_a_write_that_fails_is_a_storage_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError):
        ResultCache(tmp_path / "file", ttl_s=60).put("job_1", b"x")
