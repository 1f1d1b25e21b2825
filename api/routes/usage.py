"""GET /usage: today and this month against the plan (the seed API's shape)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import AccountDep, EngineDep
from api.errors import current_request_id

router = APIRouter(tags=["usage"])


@router.get("/usage")
def usage(account: AccountDep, engine: EngineDep):
    """`usage.today` / `usage.this_month` (`requestCount`, `imageCount`, `creditsUsed`), the plan with its limits
    and what remains, and the credit balance. Top-level keys, as in the seed API."""
    report = engine.meter.usage(account.workspace.id)
    plan, workspace = report["plan"], report["workspace"]
    (day_requests, day_images, day_credits) = report["counts"]["day"]
    (month_requests, month_images, month_credits) = report["counts"]["month"]
    body = {
        "success": True,
        "usage": {
            "today": {"requestCount": day_requests, "imageCount": day_images, "creditsUsed": day_credits},
            "this_month": {"requestCount": month_requests, "imageCount": month_images, "creditsUsed": month_credits},
        },
        "plan": {
            "name": plan.name, "slug": plan.slug,
            "limits": {"requests_per_minute": plan.requests_per_minute, "requests_per_day": plan.requests_per_day,
                       "requests_per_month": plan.requests_per_month,
                       "max_concurrent_jobs": plan.max_concurrent_jobs, "max_batch_size": plan.max_batch_size,
                       "storage": plan.storage_enabled, "storage_quota_mb": plan.storage_quota_mb,
                       "monthly_credits": plan.monthly_credits},
            "remaining_today": max(0, plan.requests_per_day - day_requests),
            "remaining_month": max(0, plan.requests_per_month - month_requests),
        },
        "credits": {"balance": workspace.credits, "monthly": plan.monthly_credits},
        "request_id": current_request_id(),
    }
    return JSONResponse(body)
