"""Slows password guessing: after a few failures for one email (or many from one address), sign-in waits.

An attempt is counted *before* the password is checked, in one transaction that holds the sign-in lock, so
parallel guesses can't all slip through while the (deliberately slow) password hash runs. A success then forgives
its own attempt. The attempts are rows in the database: every process sees the same count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import delete, select

from engine.data.db import serialize, session_scope
from engine.errors import RateLimited
from engine.data.tables import SignInAttempt, utcnow


class LoginThrottle:
    def __init__(self, db, max_per_email: int = 5, max_per_address: int = 50, window_s: int = 900):
        self._db = db
        # An address gets more room than an email: many people may share one proxy or office address.
        self.limits = {"email": max_per_email, "address": max_per_address}
        self.window = timedelta(seconds=window_s)

    def attempt(self, email: str, address: str) -> int:
        """Count one sign-in attempt, or raise RateLimited; returns the attempt's id for ``succeeded``."""
        now = utcnow()
        keys = (("email", email.strip().lower()), ("address", address))
        with session_scope(self._db) as session:
            serialize(session, "sign-in")
            for kind, subject in keys:
                stamps = session.exec(select(SignInAttempt.at).where(
                    SignInAttempt.kind == kind, SignInAttempt.subject == subject,
                    SignInAttempt.at > now - self.window).order_by(SignInAttempt.at)).all()
                if len(stamps) >= self.limits[kind]:
                    oldest = stamps[0] if stamps[0].tzinfo else stamps[0].replace(tzinfo=UTC)
                    retry = int((self.window - (now - oldest)).total_seconds()) + 1
                    raise RateLimited("too many failed sign-in attempts; try again later", retry_after=retry,
                                      limit="sign-in")
            rows = [SignInAttempt(kind=kind, subject=subject, at=now) for kind, subject in keys]
            session.add_all(rows)
            session.commit()
            return rows[1].id

    def succeeded(self, email: str, address: str, stamp: int) -> None:
        """A right password clears the email's failures and takes back this attempt from the address."""
        with session_scope(self._db) as session:
            session.exec(delete(SignInAttempt).where(SignInAttempt.kind == "email",
                                                     SignInAttempt.subject == email.strip().lower()))
            session.exec(delete(SignInAttempt).where(SignInAttempt.id == stamp))
            session.commit()

    def forget_old(self, now: datetime | None = None) -> int:
        """Attempts past the window count for nothing: removed by the housekeeping."""
        with session_scope(self._db) as session:
            removed = session.exec(delete(SignInAttempt).where(
                SignInAttempt.at <= (now or utcnow()) - self.window)).rowcount
            session.commit()
            return removed
