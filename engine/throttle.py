"""Slows password guessing: after a few failures for one email or address, sign-in waits."""

from __future__ import annotations

import threading
import time

from engine.errors import RateLimited


class LoginThrottle:
    def __init__(self, max_failures: int = 5, window_s: int = 900):
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        stamps = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = stamps
        return stamps

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                stamps = self._recent(key, now)
                if len(stamps) >= self.max_failures:
                    retry = int(self.window_s - (now - stamps[0])) + 1
                    raise RateLimited("too many failed sign-in attempts; try again later", retry_after=retry,
                                      limit="sign-in")

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
