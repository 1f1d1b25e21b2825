"""Slows password guessing without letting a stranger lock anybody out.

Three counts, each over a 15-minute window:
- per account *and* address: five failures free, then a wait that doubles with each further failure (30 s,
  1 min, 2 min … up to the window). A guesser slows only itself: the owner, from their own address, is not
  held back by somebody else's guesses at their email.
- per address, over every account (password spraying): 50 attempts.
- per account, over every address (guessing from many addresses): 200 attempts. A botnet can at worst hold one
  account for the window; a single stranger never can.

An attempt is counted *before* the password is checked, in one transaction that holds the sign-in lock, so
parallel guesses can't all slip through while the (deliberately slow) password hash runs. A success forgives
its own attempt and clears the account's failures. The attempts are rows in the database, so every process
sees the same counts; the housekeeping removes old ones and keeps the table bounded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, delete, select

from engine.data.db import serialize, session_scope
from engine.data.tables import SignInAttempt, utcnow
from engine.errors import RateLimited

FIRST_WAIT_S = 30
MAX_ROWS = 100_000  # past this, the oldest attempts go first (a flood of addresses can't grow the table)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class LoginThrottle:
    def __init__(self, db, free_per_pair: int = 5, max_per_address: int = 50, max_per_account: int = 200,
                 window_s: int = 900, max_rows: int = MAX_ROWS):
        self._db = db
        self.free_per_pair = free_per_pair
        # An address gets more room than an account and address: many people share proxy and office addresses.
        self.limits = {"address": max_per_address, "account": max_per_account}
        self.window = timedelta(seconds=window_s)
        self.max_rows = max_rows

    @staticmethod
    def _subjects(email: str, address: str) -> dict[str, str]:
        account = email.strip().lower()[:200]
        return {"pair": f"{account}|{address[:100]}", "address": address[:100], "account": account}

    def _stamps(self, session, kind: str, subject: str, now: datetime) -> list[datetime]:
        return [_aware(at) for at in session.exec(select(SignInAttempt.at).where(
            SignInAttempt.kind == kind, SignInAttempt.subject == subject,
            SignInAttempt.at > now - self.window).order_by(SignInAttempt.at)).all()]

    def _refuse(self, retry_after: float) -> RateLimited:
        return RateLimited("too many failed sign-in attempts; try again later",
                           retry_after=max(1, int(retry_after) + 1), limit="sign-in")

    def attempt(self, email: str, address: str) -> list[int]:
        """Count one sign-in attempt, or raise RateLimited; returns the attempt's rows for ``succeeded``."""
        now = utcnow()
        subjects = self._subjects(email, address)
        with session_scope(self._db) as session:
            serialize(session, "sign-in")
            failures = self._stamps(session, "pair", subjects["pair"], now)
            if len(failures) >= self.free_per_pair:
                wait = timedelta(seconds=FIRST_WAIT_S * 2 ** (len(failures) - self.free_per_pair))
                until = failures[-1] + min(wait, self.window)
                if now < until:
                    raise self._refuse((until - now).total_seconds())
            for kind, limit in self.limits.items():
                stamps = self._stamps(session, kind, subjects[kind], now)
                if len(stamps) >= limit:
                    raise self._refuse((self.window - (now - stamps[0])).total_seconds())
            rows = [SignInAttempt(kind=kind, subject=subject, at=now) for kind, subject in subjects.items()]
            session.add_all(rows)
            session.commit()
            return [row.id for row in rows]

    def succeeded(self, email: str, address: str, stamp: list[int]) -> None:
        """The right password: this attempt is forgiven and the account's failures cleared, everywhere (the
        address keeps its other attempts: spraying from it still counts)."""
        subjects = self._subjects(email, address)
        account = subjects["account"]
        with session_scope(self._db) as session:
            session.exec(delete(SignInAttempt).where(col(SignInAttempt.id).in_(stamp)))
            session.exec(delete(SignInAttempt).where(SignInAttempt.kind == "account", SignInAttempt.subject == account))
            session.exec(delete(SignInAttempt).where(SignInAttempt.kind == "pair",
                                                     col(SignInAttempt.subject).startswith(account + "|")))
            session.commit()

    def forget_old(self, now: datetime | None = None) -> int:
        """Attempts past the window count for nothing; beyond ``max_rows`` the oldest go too."""
        with session_scope(self._db) as session:
            removed = session.exec(delete(SignInAttempt).where(
                SignInAttempt.at <= (now or utcnow()) - self.window)).rowcount
            total = session.exec(select(func.count()).select_from(SignInAttempt)).one()
            if total > self.max_rows:
                cutoff = session.exec(select(SignInAttempt.id).order_by(col(SignInAttempt.id).desc())
                                      .offset(self.max_rows).limit(1)).first()
                removed += session.exec(delete(SignInAttempt).where(col(SignInAttempt.id) <= cutoff)).rowcount
            session.commit()
            return removed
