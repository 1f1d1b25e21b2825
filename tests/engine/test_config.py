import pytest

from engine.config import Settings


def test_cors_origins_from_a_comma_list_or_json(monkeypatch):
    monkeypatch.setenv("IMAGESTUDIO_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("IMAGESTUDIO_CORS_ORIGINS", '["https://c.example"]')
    assert Settings(_env_file=None).cors_origins == ["https://c.example"]


def test_strict_cors_switch_has_the_documented_name(monkeypatch):
    monkeypatch.setenv("CORS_PUBLIC_API_STRICT_ORIGINS", "true")
    assert Settings(_env_file=None).cors_strict is True


@pytest.mark.parametrize("cores,torch_default,setting,expected", [
    (8, 8, 0, 7),    # one core left for the API
    (16, 8, 0, 8),   # never more than torch's own default (physical cores)
    (1, 1, 0, 1),    # at least one
    (8, 8, 3, 3),    # an explicit setting wins
])
def test_cpu_threads_leave_a_core_for_the_api_by_default(monkeypatch, cores, torch_default, setting, expected):
    import os

    import torch

    from engine.generation.device import cpu_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_default)
    assert cpu_threads(setting) == expected
