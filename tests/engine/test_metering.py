import threading
from datetime import UTC, datetime, timedelta

import pytest

from engine.accounts.users import create_user
from engine.billing.metering import window_periods
from engine.data.db import session_scope
from engine.data.leases import LEASE
from engine.data.tables import Plan, Workspace
from engine.errors import Forbidden, InsufficientCredits, RateLimited


def make_plan(engine, **limits) -> str:
    values = dict(slug="test", name="Test", requests_per_minute=1000, requests_per_day=1000,
                  requests_per_month=1000, max_concurrent_jobs=1000, monthly_credits=0) | limits
    with session_scope(engine.db) as session:
        session.merge(Plan(**values))
        session.commit()
    return values["slug"]


def workspace_on(engine, plan: str, credits: int = 0, email: str = "m@example.com") -> str:
    with session_scope(engine.db) as session:
        user = create_user(session, email, plan_slug=plan)
        workspace = session.get(Workspace, user.workspace_id)
        workspace.credits, workspace.credits_month = credits, datetime.now(UTC).strftime("%Y-%m")
        session.add(workspace)
        session.commit()
    return user.workspace_id


def race(n: int, fn) -> tuple[int, list[str]]:
    barrier = threading.Barrier(n)
    passed, errors = [], []

    def one():
        barrier.wait()
        try:
            fn()
            passed.append(1)
        except Exception as exc:
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(passed), errors


@pytest.mark.parametrize("window", ["minute", "day", "month"])
def test_each_window_admits_exactly_its_limit_under_concurrency(engine, window):
    field = {"minute": "requests_per_minute", "day": "requests_per_day", "month": "requests_per_month"}[window]
    ws = workspace_on(engine, make_plan(engine, **{field: 10}))

    def request():
        admission = engine.meter.admit(ws)
        admission.succeeded(images=1)
        engine.meter.settle(admission)

    passed, errors = race(30, request)
    assert passed == 10 and set(errors) == {"RateLimited"}
    report = engine.meter.usage(ws)
    assert report["counts"][window] == (10, 10, 0)


def test_credits_admit_exactly_what_the_balance_pays_for(engine):
    ws = workspace_on(engine, make_plan(engine), credits=25)

    def request():
        admission = engine.meter.admit(ws, credits=3)
        admission.succeeded(credits=3, images=1)
        engine.meter.settle(admission)

    passed, errors = race(20, request)
    assert passed == 8 and set(errors) == {"InsufficientCredits"}
    with session_scope(engine.db) as session:
        assert session.get(Workspace, ws).credits == 1
    assert engine.meter.usage(ws)["counts"]["day"] == (8, 8, 24)


def test_concurrency_limit_and_release(engine):
    ws = workspace_on(engine, make_plan(engine, max_concurrent_jobs=2))
    first, second = engine.meter.admit(ws), engine.meter.admit(ws)
    with pytest.raises(RateLimited) as info:
        engine.meter.admit(ws)
    assert info.value.limit == "concurrency"
    engine.meter.settle(first)
    engine.meter.settle(first)  # settling twice is harmless
    third = engine.meter.admit(ws)
    engine.meter.settle(second)
    engine.meter.settle(third)
    assert engine.meter.active(ws) == 0


def test_failed_work_costs_nothing(engine):
    ws = workspace_on(engine, make_plan(engine), credits=10)
    admission = engine.meter.admit(ws, requests=3, credits=6)
    admission.succeeded(requests=1, images=1, credits=2)  # one of three succeeded
    engine.meter.settle(admission)
    with session_scope(engine.db) as session:
        assert session.get(Workspace, ws).credits == 8
    assert engine.meter.usage(ws)["counts"]["month"] == (1, 1, 2)


def test_rate_limit_says_when_to_retry(engine):
    ws = workspace_on(engine, make_plan(engine, requests_per_day=1))
    admission = engine.meter.admit(ws)
    admission.succeeded()
    engine.meter.settle(admission)
    with pytest.raises(RateLimited) as info:
        engine.meter.admit(ws)
    assert info.value.limit == "day" and 1 <= info.value.retry_after <= 86400
    assert info.value.headers["RateLimit-Remaining"] == "0"


def test_suspended_or_planless_accounts_are_forbidden(engine):
    ws = workspace_on(engine, make_plan(engine))
    with session_scope(engine.db) as session:
        workspace = session.get(Workspace, ws)
        workspace.suspended = True
        session.add(workspace)
        session.commit()
    with pytest.raises(Forbidden, match="suspended"):
        engine.meter.admit(ws)
    other = workspace_on(engine, make_plan(engine), email="n@example.com")
    with session_scope(engine.db) as session:
        workspace = session.get(Workspace, other)
        workspace.plan_slug = None
        session.add(workspace)
        session.commit()
    with pytest.raises(Forbidden, match="no plan"):
        engine.meter.admit(other)


def test_monthly_credits_are_granted_once_a_month(engine):
    ws = workspace_on(engine, make_plan(engine, monthly_credits=50), credits=5)
    with session_scope(engine.db) as session:
        workspace = session.get(Workspace, ws)
        workspace.credits_month = "2000-01"
        session.add(workspace)
        session.commit()
    engine.meter.settle(engine.meter.admit(ws, credits=10))  # refunded: nothing succeeded
    with session_scope(engine.db) as session:
        assert session.get(Workspace, ws).credits == 50


def test_windows_reset_at_utc_boundaries():
    periods = window_periods(datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC))
    assert periods["minute"] == ("2026-12-31T23:59", 30)
    assert periods["day"] == ("2026-12-31", 30)
    assert periods["month"] == ("2026-12", 30)


def test_insufficient_credits_message(engine):
    ws = workspace_on(engine, make_plan(engine), credits=1)
    with pytest.raises(InsufficientCredits, match="costs 2 credits and the balance is 1"):
        engine.meter.admit(ws, credits=2)


def test_admissions_left_by_a_crash_are_given_back(engine):
    ws = workspace_on(engine, make_plan(engine), credits=10)
    admission = engine.meter.admit(ws, requests=2, credits=4)  # never settled: the process "died" here
    with session_scope(engine.db) as session:
        assert session.get(Workspace, ws).credits == 6
    assert engine.meter.active(ws) == 1
    assert engine.meter.refund_abandoned() == 0  # its process vouches for it: a live lease is never touched
    later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
    assert engine.meter.refund_abandoned(now=later) == 1  # ... until the lease runs out
    with session_scope(engine.db) as session:
        assert session.get(Workspace, ws).credits == 10
    assert engine.meter.usage(ws)["counts"]["day"] == (0, 0, 0)
    assert engine.meter.refund_abandoned(now=later) == 0
    engine.meter.settle(admission)  # its owner settling late gives nothing back a second time
    with session_scope(engine.db) as session:
        assert session.get(Workspace, ws).credits == 10


def test_a_dead_processes_admissions_are_given_back_at_once(engine):
    ws = workspace_on(engine, make_plan(engine), credits=10)
    engine.meter.admit(ws, credits=3)
    assert engine.meter.charge_owners() == {engine.meter.process_id}
    assert engine.meter.refund_abandoned({engine.meter.process_id}) == 1
    assert engine.meter.active(ws) == 0


def test_the_owner_plan_is_never_rate_limited(engine):
    """The person who runs the box: no limit in the plan, and more requests in a minute and at once than the
    Free plan allows are all admitted."""
    from engine.accounts.users import DEFAULT_PLANS, UNLIMITED

    owner = next(plan for plan in DEFAULT_PLANS if plan.slug == "owner")
    assert min(owner.requests_per_minute, owner.requests_per_day, owner.requests_per_month,
               owner.max_concurrent_jobs, owner.monthly_credits) == UNLIMITED
    free = next(plan for plan in DEFAULT_PLANS if plan.slug == "free")
    with session_scope(engine.db) as session:  # a new workspace: its monthly credits are granted on first use
        ws = create_user(session, "owner@example.com", plan_slug="owner").workspace_id
        session.commit()
    held = [engine.meter.admit(ws) for _ in range(20)]  # concurrent: none settled yet
    for admission in held:
        admission.succeeded(images=1)
        engine.meter.settle(admission)

    def request():
        admission = engine.meter.admit(ws, credits=3)  # costs credits too: the owner's balance is unlimited
        admission.succeeded(images=1)
        engine.meter.settle(admission)

    made = len(held) + 3 * free.requests_per_minute
    for _ in range(made - len(held)):
        request()
    assert engine.meter.usage(ws)["counts"]["minute"][0] == made
