"""Plans enforced: requests per minute/day/month, concurrent jobs and credits, exact under concurrency.

Every change is a conditional statement inside a write transaction (``BEGIN IMMEDIATE`` on
SQLite), so N concurrent requests against M remaining units admit exactly min(N, M). A batch first
reads how many of its items fit (under the same write lock), then takes exactly those; items past
that come back refused, each with its reason. A request is admitted (units taken) before it runs
and settled afterwards: whatever did not succeed is given back, so a failed request costs nothing.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, text, update
from sqlmodel import select

from engine.data.db import read_scope, session_scope
from engine.data.leases import LEASE
from engine.data.tables import PendingCharge, Plan, UsageCounter, Workspace
from engine.errors import DatabaseBusy, EngineError, Forbidden, InsufficientCredits, RateLimited

WINDOWS = ("minute", "day", "month")
PROMPT_TOOLS_WINDOW = "prompt_tools"  # its own per-minute counter, outside the request windows
_SETTLE_ATTEMPTS = 4
_PLAN_FIELD = {"minute": "requests_per_minute", "day": "requests_per_day", "month": "requests_per_month"}


def window_periods(now: datetime) -> dict[str, tuple[str, int]]:
    """For each window: its period key and the seconds until it resets (UTC)."""
    next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    next_day = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return {
        "minute": (now.strftime("%Y-%m-%dT%H:%M"), _seconds(now, next_minute)),
        "day": (now.strftime("%Y-%m-%d"), _seconds(now, next_day)),
        "month": (now.strftime("%Y-%m"), _seconds(now, next_month)),
    }


# "window" is a reserved word in PostgreSQL: quoted everywhere. In DO UPDATE the row's own columns are qualified
# (PostgreSQL finds a bare "requests" ambiguous with the excluded row).
_TAKE_UNITS = text(
    'INSERT INTO usagecounter (workspace_id, "window", period, requests, images, credits) '
    "SELECT :ws, :window, :period, :n, 0, :c WHERE :n <= :limit "
    'ON CONFLICT (workspace_id, "window", period) DO UPDATE '
    "SET requests = usagecounter.requests + :n, credits = usagecounter.credits + :c "
    "WHERE usagecounter.requests + :n <= :limit RETURNING requests")


def take_units(conn, workspace_id: str, window: str, period: str, *, requests: int, credits: int,
               limit: int) -> int | None:
    """Count ``requests`` (and ``credits``) into one window if that keeps it within ``limit``, in one statement;
    the window's new request count, or None when it would go over."""
    row = conn.execute(_TAKE_UNITS, {"ws": workspace_id, "window": window, "period": period, "n": requests,
                                     "c": credits, "limit": limit}).first()
    return None if row is None else row[0]


def _seconds(now: datetime, then: datetime) -> int:
    return max(1, int((then - now).total_seconds() + 0.999))


@dataclass
class Admission:
    workspace_id: str
    plan: Plan
    requests: int
    credits: int
    periods: dict[str, tuple[str, int]]
    remaining: dict[str, int]  # per window, after this admission
    charge_id: str = ""  # the PendingCharge row that stands for this admission until it is settled
    ok_requests: int = 0
    images: int = 0
    credits_used: int = 0
    deferred: bool = False  # settled later, when work that outlives the request finishes
    refusals: list[EngineError] = field(default_factory=list)  # batch items that did not fit, in order
    settled: bool = field(default=False, repr=False)

    def succeeded(self, *, requests: int = 1, images: int = 0, credits: int = 0) -> None:
        self.ok_requests += requests
        self.images += images
        self.credits_used += credits

    def headers(self) -> dict[str, str]:
        """IETF RateLimit headers for the tightest window."""
        window = min(WINDOWS, key=lambda w: self.remaining[w])
        limit = getattr(self.plan, _PLAN_FIELD[window])
        reset = self.periods[window][1]
        return rate_limit_headers(self.plan, limit, self.remaining[window], reset)


def rate_limit_headers(plan: Plan, limit: int, remaining: int, reset: int) -> dict[str, str]:
    now = datetime.now(UTC)
    month_s = calendar.monthrange(now.year, now.month)[1] * 86400  # windows are calendar months (UTC)
    policy = ", ".join(f"{getattr(plan, _PLAN_FIELD[w])};w={s}" for w, s in
                       (("minute", 60), ("day", 86400), ("month", month_s)))
    return {
        "RateLimit": f"limit={limit}, remaining={max(0, remaining)}, reset={reset}",
        "RateLimit-Policy": policy,
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(reset),
    }


class Meter:
    """``process_id`` owns the charges (and so the concurrency slots) this meter takes; see engine/data/leases.py."""

    def __init__(self, db, process_id: str = "local"):
        self._db = db
        self.process_id = process_id

    # -- reading -----------------------------------------------------------------------------
    def plan_of(self, workspace_id: str) -> tuple[Workspace, Plan]:
        with read_scope(self._db) as session:
            workspace = session.get(Workspace, workspace_id)
            plan = session.get(Plan, workspace.plan_slug) if workspace and workspace.plan_slug else None
        if workspace is None:
            raise Forbidden("this account has no workspace")
        if workspace.suspended:
            raise Forbidden("this account is suspended; contact the administrator")
        if plan is None:
            raise Forbidden("this account has no plan; ask the administrator to assign one")
        return workspace, plan

    def active(self, workspace_id: str, now: datetime | None = None) -> int:
        """Requests of the workspace running now, on any process: its live charges."""
        with read_scope(self._db) as session:
            return self._live_charges(session, workspace_id, now or datetime.now(UTC))

    @staticmethod
    def _live_charges(session, workspace_id: str, now: datetime) -> int:
        return session.exec(select(func.count()).select_from(PendingCharge).where(
            PendingCharge.workspace_id == workspace_id, PendingCharge.lease_expires_at > now)).one()

    # -- admitting and settling --------------------------------------------------------------
    def admit(self, workspace_id: str, *, requests: int = 1, credits: int = 0,
              now: datetime | None = None) -> Admission:
        """Take ``requests`` units of every window, a concurrency slot and ``credits``, or raise."""
        return self._admit(workspace_id, [credits] + [0] * (requests - 1), partial=False, now=now)

    def admit_batch(self, workspace_id: str, costs: list[int], now: datetime | None = None) -> Admission:
        """Admit as many batch items, in order, as the limits and the credit balance allow (one request and
        ``costs[i]`` credits each). ``admission.refusals`` says why each of the others was refused; only a
        batch of which nothing fits raises."""
        return self._admit(workspace_id, costs, partial=True, now=now)

    def _admit(self, workspace_id: str, costs: list[int], *, partial: bool, now: datetime | None) -> Admission:
        now = now or datetime.now(UTC)
        _, plan = self.plan_of(workspace_id)
        periods = window_periods(now)
        remaining: dict[str, int] = {}
        with session_scope(self._db) as session:
            conn = session.connection()  # SQLite: BEGIN IMMEDIATE, the write lock is ours until commit
            if conn.dialect.name == "postgresql":  # one admission per workspace at a time, across processes
                # NO KEY UPDATE, not UPDATE: it must not block the foreign-key checks (KEY SHARE) of rows that
                # point at the workspace, or an image being recorded and an admission deadlock.
                conn.execute(text("SELECT id FROM workspace WHERE id = :ws FOR NO KEY UPDATE"), {"ws": workspace_id})
            # A concurrency slot is a live charge, on whichever process holds it.
            if self._live_charges(session, workspace_id, now) >= plan.max_concurrent_jobs:
                session.rollback()
                raise RateLimited(f"at most {plan.max_concurrent_jobs} concurrent requests on the {plan.name} plan",
                                  retry_after=2, limit="concurrency")
            self._grant_monthly_credits(conn, workspace_id, plan, periods["month"][0])
            # How many items fit: read under the write lock, so nobody else can take the room meanwhile.
            room = {window: getattr(plan, _PLAN_FIELD[window]) - (conn.execute(text(
                'SELECT requests FROM usagecounter WHERE workspace_id = :ws AND "window" = :window '
                "AND period = :period"), {"ws": workspace_id, "window": window,
                                          "period": periods[window][0]}).scalar() or 0) for window in WINDOWS}
            balance = conn.execute(text("SELECT credits FROM workspace WHERE id = :ws"),
                                   {"ws": workspace_id}).scalar()
            by_rate = max(0, min(room.values()))
            by_credits = next((i for i in range(len(costs)) if sum(costs[:i + 1]) > balance), len(costs))
            fits = min(by_rate, by_credits, len(costs))
            if fits < len(costs) and (fits == 0 or not partial):
                session.rollback()
                # Refused whole: a single request needs all its units; a batch of which nothing fits says
                # which bound stopped its first item.
                if by_rate < (1 if partial else len(costs)):
                    raise self._rate_limited(plan, min(WINDOWS, key=lambda w: room[w]), periods)
                raise InsufficientCredits(_credit_message(costs[0] if partial else sum(costs), balance))
            admitted = costs[:fits]
            credits = sum(admitted)
            for window in WINDOWS:
                limit = getattr(plan, _PLAN_FIELD[window])
                taken = take_units(conn, workspace_id, window, periods[window][0], requests=fits, credits=credits,
                                   limit=limit)
                if taken is None:  # cannot happen under the lock; the conditional write keeps the limit anyway
                    session.rollback()
                    raise self._rate_limited(plan, window, periods)
                remaining[window] = limit - taken
            if credits > 0:
                left = conn.execute(text(
                    "UPDATE workspace SET credits = credits - :c WHERE id = :ws AND credits >= :c RETURNING credits"),
                    {"ws": workspace_id, "c": credits}).first()
                if left is None:
                    session.rollback()
                    raise InsufficientCredits(_credit_message(credits, balance))
            charge = PendingCharge(workspace_id=workspace_id, requests=fits, credits=credits,
                                   periods={w: periods[w][0] for w in WINDOWS}, process_id=self.process_id,
                                   lease_expires_at=now + LEASE)
            session.add(charge)
            session.commit()
        tightest = min(WINDOWS, key=lambda w: room[w])
        refusals: list[EngineError] = [
            self._rate_limited(plan, tightest, periods) if i >= by_rate
            else InsufficientCredits(_credit_message(costs[i], balance - credits, item=True))
            for i in range(fits, len(costs))]
        return Admission(workspace_id, plan, fits, credits, periods, remaining, charge_id=charge.id,
                         refusals=refusals)

    @staticmethod
    def _rate_limited(plan: Plan, window: str, periods) -> RateLimited:
        limit = getattr(plan, _PLAN_FIELD[window])
        reset = periods[window][1]
        return RateLimited(f"{_describe(window)} limit of {limit} requests reached on the {plan.name} plan",
                           retry_after=reset, limit=window, headers=rate_limit_headers(plan, limit, 0, reset))

    @staticmethod
    def _grant_monthly_credits(conn, workspace_id: str, plan: Plan, month: str) -> None:
        """At the first request of a month the balance is topped up to the plan's monthly credits."""
        conn.execute(text(
            "UPDATE workspace SET credits = CASE WHEN credits > :monthly THEN credits ELSE :monthly END, "
            "credits_month = :month "
            "WHERE id = :ws AND (credits_month IS NULL OR credits_month != :month)"),
            {"ws": workspace_id, "monthly": plan.monthly_credits, "month": month})

    def settle(self, admission: Admission) -> None:
        """Give back what did not succeed, record images; idempotent. What was delivered (``deliver``) stays
        charged whatever the admission says: a caller that hung up before it heard of its image still pays."""
        if admission.settled:
            return
        admission.settled = True
        self._settle_units(admission.charge_id, admission.workspace_id, {w: admission.periods[w][0] for w in WINDOWS},
                           refund_requests=admission.requests - admission.ok_requests,
                           refund_credits=admission.credits - admission.credits_used,
                           images=admission.images, admitted_requests=admission.requests)

    @staticmethod
    def deliver(session, charge_id: str, credits: int) -> bool:
        """Make one image of a charge final, inside the transaction that records the image (and the job's
        success), so a crash can't leave a delivered image refunded, nor a refund without its image gone.
        False when the charge is gone (already settled, or given back by a recovering process)."""
        conn = session.connection()
        row = conn.execute(text(
            "UPDATE pendingcharge SET requests = requests - 1, credits = credits - :c "
            "WHERE id = :id AND requests >= 1 RETURNING workspace_id, periods"),
            {"id": charge_id, "c": credits}).first()
        if row is None:
            return False
        periods = row.periods if isinstance(row.periods, dict) else json.loads(row.periods)
        for window in WINDOWS:
            conn.execute(text(
                'UPDATE usagecounter SET images = images + 1 WHERE workspace_id = :ws AND "window" = :window '
                "AND period = :period"), {"ws": row.workspace_id, "window": window, "period": periods[window]})
        return True

    def _settle_units(self, charge_id: str, workspace_id: str, periods: dict[str, str], *, refund_requests: int,
                      refund_credits: int, images: int, admitted_requests: int | None = None) -> None:
        """Remove the charge and give back what it says, never more than the charge still holds (what was
        delivered is final); a charge already settled (by a recovering process that took it for abandoned)
        is not given back twice. Images already counted at delivery are not counted again."""
        for attempt in range(_SETTLE_ATTEMPTS):
            try:
                with session_scope(self._db) as session:
                    conn = session.connection()
                    held = conn.execute(text("DELETE FROM pendingcharge WHERE id = :id RETURNING requests, credits"),
                                        {"id": charge_id}).first()
                    if held is None:
                        session.rollback()
                        return
                    delivered = (admitted_requests - held.requests) if admitted_requests is not None else 0
                    refund_r = max(0, min(refund_requests, held.requests))
                    refund_c = max(0, min(refund_credits, held.credits))
                    new_images = max(0, images - delivered)
                    if conn.dialect.name == "postgresql":  # the workspace before the counters, as admissions
                        conn.execute(text("SELECT id FROM workspace WHERE id = :ws FOR NO KEY UPDATE"),
                                     {"ws": workspace_id})
                    if refund_r or new_images or refund_c:
                        for window in WINDOWS:
                            conn.execute(text(
                                "UPDATE usagecounter SET requests = requests - :r, images = images + :i, "
                                "credits = credits - :c WHERE workspace_id = :ws AND \"window\" = :window "
                                "AND period = :period"),
                                {"r": refund_r, "i": new_images, "c": refund_c, "ws": workspace_id,
                                 "window": window, "period": periods[window]})
                    if refund_c:
                        conn.execute(text("UPDATE workspace SET credits = credits + :c WHERE id = :ws"),
                                     {"c": refund_c, "ws": workspace_id})
                    session.commit()
                    return
            except DatabaseBusy:
                # Settling runs after the work, often in a future's callback where nobody could retry it; a
                # charge left here would hold a concurrency slot for as long as this process lives.
                if attempt == _SETTLE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def refund_abandoned(self, dead_processes: set[str] = frozenset(), now: datetime | None = None,
                         keep: set[str] = frozenset()) -> int:
        """Give back the admissions nobody will settle: those whose lease ran out (or that have none), and those
        of processes known dead; not those in ``keep`` (their jobs will still run). A live process's charges are
        never touched."""
        now = now or datetime.now(UTC)
        with session_scope(self._db) as session:
            charges = [charge for charge in session.exec(select(PendingCharge).where(or_(
                PendingCharge.lease_expires_at.is_(None), PendingCharge.lease_expires_at <= now,
                PendingCharge.process_id.in_(dead_processes)))).all() if charge.id not in keep]
        for charge in charges:
            # What it still holds was never delivered (delivered images left it in their own transaction).
            self._settle_units(charge.id, charge.workspace_id, charge.periods, refund_requests=charge.requests,
                               refund_credits=charge.credits, images=0)
        return len(charges)

    def adopt_charge(self, session, charge_id: str | None, until: datetime) -> None:
        """This process takes over a charge (of a job it resumes), inside the transaction that claims the job."""
        if charge_id:
            session.exec(update(PendingCharge).where(PendingCharge.id == charge_id)
                         .values(process_id=self.process_id, lease_expires_at=until))

    def release_charge(self, charge_id: str | None) -> None:
        """Settle a charge whose admission is gone (a resumed job's): what it still holds was not delivered and
        goes back; what was delivered left it in the transaction that recorded the image."""
        if not charge_id:
            return
        with read_scope(self._db) as session:
            charge = session.get(PendingCharge, charge_id)
        if charge is not None:
            self._settle_units(charge.id, charge.workspace_id, charge.periods, refund_requests=charge.requests,
                               refund_credits=charge.credits, images=0)

    def renew_leases(self, until: datetime) -> None:
        """This process holds its charges until ``until`` (the heartbeat; ``now`` to let them go)."""
        with session_scope(self._db) as session:
            session.exec(update(PendingCharge).where(PendingCharge.process_id == self.process_id)
                         .values(lease_expires_at=until))
            session.commit()

    def charge_owners(self, now: datetime | None = None) -> set[str]:
        """The processes holding live charges."""
        with read_scope(self._db) as session:
            return set(session.exec(select(PendingCharge.process_id).distinct().where(
                PendingCharge.lease_expires_at > (now or datetime.now(UTC)))).all()) - {None}

    def guard_prompt_tools(self, workspace_id: str, per_minute: int, now: datetime | None = None) -> None:
        """Prompt tools are free and outside the quotas (as the seed API promises); this per-minute count of
        their calls, kept apart from the request windows, only protects the server from floods."""
        period, reset = window_periods(now or datetime.now(UTC))["minute"]
        with session_scope(self._db) as session:
            taken = take_units(session.connection(), workspace_id, PROMPT_TOOLS_WINDOW, period, requests=1, credits=0,
                               limit=per_minute)
            session.commit()
        if taken is None:
            raise RateLimited(f"prompt tools take at most {per_minute} calls a minute; retry in {reset} s",
                              retry_after=reset, limit=PROMPT_TOOLS_WINDOW)

    # -- reporting ---------------------------------------------------------------------------
    def usage(self, workspace_id: str, now: datetime | None = None) -> dict:
        now = now or datetime.now(UTC)
        periods = window_periods(now)
        with read_scope(self._db) as session:
            workspace = session.get(Workspace, workspace_id)
            plan = session.get(Plan, workspace.plan_slug) if workspace.plan_slug else None
            rows = {w: session.get(UsageCounter, (workspace_id, w, periods[w][0])) for w in WINDOWS}
        counts = {w: (r.requests, r.images, r.credits) if r else (0, 0, 0) for w, r in rows.items()}
        return {"workspace": workspace, "plan": plan, "counts": counts, "periods": periods}

    def daily_history(self, workspace_id: str, days: int = 30, now: datetime | None = None) -> list[dict]:
        now = now or datetime.now(UTC)
        keys = [(now - timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days - 1, -1, -1)]
        with read_scope(self._db) as session:
            rows = session.exec(select(UsageCounter).where(
                UsageCounter.workspace_id == workspace_id, UsageCounter.window == "day",
                UsageCounter.period.in_(keys))).all()
        by_day = {r.period: r for r in rows}
        return [{"date": k, "requests": by_day[k].requests if k in by_day else 0,
                 "images": by_day[k].images if k in by_day else 0} for k in keys]


def _credit_message(credits: int, balance: int, item: bool = False) -> str:
    plural = "s" if credits != 1 else ""
    if item:
        return f"this item costs {credits} credit{plural} and the balance left for it is {balance}"
    return f"this request costs {credits} credit{plural} and the balance is {balance}"


def _describe(window: str) -> str:
    return {"minute": "per-minute", "day": "daily", "month": "monthly"}[window]
