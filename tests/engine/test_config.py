from engine.config import Settings


def test_cors_origins_from_a_comma_list_or_json(monkeypatch):
    monkeypatch.setenv("IMAGESTUDIO_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("IMAGESTUDIO_CORS_ORIGINS", '["https://c.example"]')
    assert Settings(_env_file=None).cors_origins == ["https://c.example"]


def test_strict_cors_switch_has_the_documented_name(monkeypatch):
    monkeypatch.setenv("CORS_PUBLIC_API_STRICT_ORIGINS", "true")
    assert Settings(_env_file=None).cors_strict is True
