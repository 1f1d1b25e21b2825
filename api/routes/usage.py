"""GET /usage: today and this month against the plan (the seed API's shape)."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AccountDep, EngineDep
from api.responses import error_responses, ok
from api.schemas import Envelope

router = APIRouter(tags=["usage"])


class Counts(BaseModel):
    requestCount: int  # noqa: N815  (the seed API's names)
    imageCount: int  # noqa: N815
    creditsUsed: int  # noqa: N815


class UsageWindows(BaseModel):
    today: Counts
    this_month: Counts


class PlanLimits(BaseModel):
    requests_per_minute: int
    requests_per_day: int
    requests_per_month: int
    max_concurrent_jobs: int
    max_batch_size: int
    storage: bool
    storage_quota_mb: int
    monthly_credits: int


class PlanUsage(BaseModel):
    name: str
    slug: str
    requests_per_month: int
    requests_per_day: int
    remaining_today: int
    remaining_month: int
    requests_per_minute: int
    max_concurrent_jobs: int
    max_batch_size: int
    storage: bool
    storage_quota_mb: int
    monthly_credits: int
    limits: PlanLimits = Field(description="The same numbers grouped (kept for earlier clients of this server)")


class CreditBalance(BaseModel):
    balance: int
    monthly: int


class UsageReport(BaseModel):
    usage: UsageWindows
    plan: PlanUsage
    credits: CreditBalance


@router.get("/usage", response_model=Envelope[UsageReport], responses=error_responses(401, 403))
def usage(account: AccountDep, engine: EngineDep):
    """`data.usage.today` / `data.usage.this_month` (`requestCount`, `imageCount`, and our `creditsUsed`), `data.plan`
    with its limits and what remains, and `data.credits`: the seed API's shape."""
    report = engine.meter.usage(account.workspace.id)
    plan, workspace = report["plan"], report["workspace"]
    (day_requests, day_images, day_credits) = report["counts"]["day"]
    (month_requests, month_images, month_credits) = report["counts"]["month"]
    limits = {"requests_per_minute": plan.requests_per_minute, "requests_per_day": plan.requests_per_day,
              "requests_per_month": plan.requests_per_month, "max_concurrent_jobs": plan.max_concurrent_jobs,
              "max_batch_size": plan.max_batch_size, "storage": plan.storage_enabled,
              "storage_quota_mb": plan.storage_quota_mb, "monthly_credits": plan.monthly_credits}
    return ok(UsageReport.model_validate({
        "usage": {
            "today": {"requestCount": day_requests, "imageCount": day_images, "creditsUsed": day_credits},
            "this_month": {"requestCount": month_requests, "imageCount": month_images, "creditsUsed": month_credits},
        },
        "plan": {"name": plan.name, "slug": plan.slug, **limits, "limits": limits,
                 "remaining_today": max(0, plan.requests_per_day - day_requests),
                 "remaining_month": max(0, plan.requests_per_month - month_requests)},
        "credits": {"balance": workspace.credits, "monthly": plan.monthly_credits},
    }))
