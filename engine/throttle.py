"""Slows password guessing: after a few failures for one email (or many from one address), sign-in waits.

An attempt is counted *before* the password is checked, under one lock, so parallel guesses can't all
slip through while the (deliberately slow) password hash runs. A success then forgives its own attempt.
"""

from __future__ import annotations

import threading
import time

from engine.errors import RateLimited


class LoginThrottle:
    def __init__(self, max_per_email: int = 5, max_per_address: int = 50, window_s: int = 900):
        # An address gets more room than an email: many people may share one proxy or office address.
        self.limits = {"email": max_per_email, "address": max_per_address}
        self.window_s = window_s
        self._attempts: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        stamps = [t for t in self._attempts.get(key, []) if now - t < self.window_s]
        self._attempts[key] = stamps
        return stamps

    def attempt(self, email: str, address: str) -> float:
        """Count one sign-in attempt, or raise RateLimited; returns the attempt's stamp for ``forgive``."""
        now = time.monotonic()
        keys = (("email", email.strip().lower()), ("address", address))
        with self._lock:
            for key in keys:
                stamps = self._recent(key, now)
                if len(stamps) >= self.limits[key[0]]:
                    retry = int(self.window_s - (now - stamps[0])) + 1
                    raise RateLimited("too many failed sign-in attempts; try again later", retry_after=retry,
                                      limit="sign-in")
            for key in keys:
                self._attempts[key].append(now)
        return now

    def succeeded(self, email: str, address: str, stamp: float) -> None:
        """A right password clears the email's failures and takes back this attempt from the address."""
        with self._lock:
            self._attempts.pop(("email", email.strip().lower()), None)
            stamps = self._attempts.get(("address", address), [])
            if stamp in stamps:
                stamps.remove(stamp)
