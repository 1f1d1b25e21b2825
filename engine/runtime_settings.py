"""Settings an admin changes at runtime (studio admin page); the environment gives the defaults."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from engine.accounts.keys import ENCRYPTED_PREFIX, SecretUnreadable
from engine.config import Settings
from engine.data.db import insert_if_absent, read_scope, session_scope
from engine.data.tables import AppSetting, utcnow
from engine.errors import InvalidRequest

log = logging.getLogger(__name__)

# key -> (type, environment default getter)
RUNTIME_KEYS: dict[str, tuple[type, Any]] = {
    "storage_enabled": (bool, lambda s: s.storage_enabled),
    "cors_strict": (bool, lambda s: s.cors_strict),
    "cors_origins": (list, lambda s: list(s.cors_origins)),
    "text_model": (dict, lambda s: {"provider": "builtin"}),
    "max_batch_size": (int, lambda s: 100),  # a server-wide cap over every plan's batch size
    "model_aliases": (dict, lambda s: dict(s.model_aliases)),  # requested slug -> the model that runs it
    "default_model": (str, lambda s: s.default_model),  # what a request that names no model runs
    # Vendor APIs (engine/providers/registry.py): each provider's key and base URL, routes, prices, cut-outs.
    "provider_bfl": (dict, lambda s: {}),
    "provider_leonardo": (dict, lambda s: {}),
    "provider_stability": (dict, lambda s: {}),
    "provider_routes": (dict, lambda s: {}),
    "provider_prices": (dict, lambda s: {}),
    "background_removal": (str, lambda s: "local"),  # "local" (rembg) or "stability"
}


# Fields that are secrets (a text model's API key): encrypted at rest with a key from the server secret.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {"text_model": ("api_key",), "provider_bfl": ("api_key",),
                                             "provider_leonardo": ("api_key",), "provider_stability": ("api_key",)}

CACHE_TTL_S = 5.0  # another process (the CLI, a second server) changes a setting: seen here within this time


class RuntimeSettings:
    def __init__(self, db, settings: Settings, keys=None):
        self._db = db
        self._settings = settings
        self._keys = keys  # ServerKeys: encrypts SECRET_FIELDS (None: stored as given, for tools without a secret)
        self._cache: dict[str, Any] | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._cache is None or time.monotonic() - self._loaded_at > CACHE_TTL_S:
                values = {key: default(self._settings) for key, (_, default) in RUNTIME_KEYS.items()}
                with read_scope(self._db) as session:
                    for row in session.query(AppSetting).all():
                        if row.key in RUNTIME_KEYS:
                            values[row.key] = self._reveal(row.key, row.value)
                self._cache, self._loaded_at = values, time.monotonic()
            return self._cache

    def get(self, key: str) -> Any:
        return self._load()[key]

    def all(self) -> dict[str, Any]:
        return dict(self._load())

    def set(self, key: str, value: Any) -> None:
        if key not in RUNTIME_KEYS:
            raise InvalidRequest(f"unknown setting '{key}'", field="key")
        kind = RUNTIME_KEYS[key][0]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidRequest(f"setting '{key}' must be a {kind.__name__}", field=key)
        with session_scope(self._db) as session:
            session.merge(AppSetting(key=key, value=self._conceal(key, value), updated_at=utcnow()))
            session.commit()
        with self._lock:
            self._cache = None

    def _conceal(self, key: str, value: Any) -> Any:
        fields = SECRET_FIELDS.get(key, ())
        if self._keys is None or not fields or not isinstance(value, dict):
            return value
        return {name: self._keys.encrypt(v) if name in fields and isinstance(v, str) and v else v
                for name, v in value.items()}

    def _reveal(self, key: str, value: Any) -> Any:
        fields = SECRET_FIELDS.get(key, ())
        if self._keys is None or not fields or not isinstance(value, dict):
            return value
        revealed = dict(value)
        for name in fields:
            if isinstance(revealed.get(name), str):
                try:
                    revealed[name] = self._keys.decrypt(revealed[name])
                except SecretUnreadable:
                    log.error("setting %s.%s can't be decrypted (was the secret key changed?); set it again",
                              key, name)
                    revealed[name] = None
        return revealed

    def encrypt_stored_secrets(self) -> int:
        """Encrypt secrets an earlier version stored in plain text; how many settings were rewritten."""
        rewritten = 0
        for key in SECRET_FIELDS:
            with read_scope(self._db) as session:
                row = session.get(AppSetting, key)
            if row is None or not isinstance(row.value, dict):
                continue
            plain = [name for name in SECRET_FIELDS[key]
                     if isinstance(row.value.get(name), str) and row.value[name]
                     and not row.value[name].startswith(ENCRYPTED_PREFIX)]
            if plain:
                self.set(key, row.value)
                rewritten += 1
        return rewritten


SECRET_KEY_ROW = "secret_key"


def shared_secret_key(db, settings: Settings) -> str:
    """The secret that signs tokens, links and studio sessions: the configured one, else one kept in the
    database, so that every process on it signs alike. Made once (insert-or-nothing, the first writer wins);
    a secret an earlier version generated into the data dir is adopted, so its links keep working."""
    if settings.secret_key:
        return settings.secret_key
    with session_scope(db) as session:
        row = session.get(AppSetting, SECRET_KEY_ROW)
        if row is not None:
            return row.value
        legacy = settings.secret_key_file
        candidate = legacy.read_text().strip() if legacy.is_file() else secrets.token_urlsafe(48)
        insert_if_absent(session, AppSetting, "key", key=SECRET_KEY_ROW, value=candidate, updated_at=utcnow())
        session.commit()
        return session.get(AppSetting, SECRET_KEY_ROW, populate_existing=True).value
