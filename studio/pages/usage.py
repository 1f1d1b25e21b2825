"""Usage (/usage): today and this month against the plan, the last 30 days, recent API requests."""

from __future__ import annotations

from dataclasses import dataclass

from nicegui import ui

from engine.data.tables import ApiLog, User
from engine.service import ImageEngine
from studio import auth
from studio.layout import card, frame
from studio.offload import off_loop
from studio.widgets import empty_state, when

RECENT_LOGS = 25


def register(engine: ImageEngine) -> None:
    @ui.page("/usage", title="Usage · Image Studio")
    async def usage_page():
        user = await auth.require_user(engine, "/usage")
        if user is None:
            return
        data = await off_loop(usage_data, engine, user)
        with frame(user, "/usage", "Usage", "Studio and API requests count against the same plan."):
            usage_view(data)


@dataclass
class UsageData:
    report: dict  # engine.meter.usage
    history: list[dict]  # engine.meter.daily_history, 30 days
    logs: list[ApiLog]  # the newest API requests


def usage_data(engine: ImageEngine, user: User) -> UsageData:
    """What the page shows (blocking: the database; call it off the loop)."""
    return UsageData(report=engine.meter.usage(user.workspace_id),
                     history=engine.meter.daily_history(user.workspace_id, days=30),
                     logs=engine.request_log.recent(user.id, RECENT_LOGS))


def stat(label: str, value: str, detail: str = "", fraction: float | None = None, marker: str = "") -> None:
    with ui.column().classes("studio-card p-4 gap-1 min-w-0").mark(marker):
        ui.label(label).classes("text-xs uppercase tracking-wide studio-muted")
        ui.label(value).classes("studio-stat")
        if detail:
            ui.label(detail).classes("text-xs studio-muted")
        if fraction is not None:
            color = "negative" if fraction >= 0.9 else "warning" if fraction >= 0.7 else "primary"
            ui.linear_progress(value=min(1.0, fraction), show_value=False, color=color) \
                .props("rounded size=6px").classes("mt-1")


def usage_view(data: UsageData) -> None:
    report = data.report
    plan, workspace = report["plan"], report["workspace"]
    day_requests, day_images, day_credits = report["counts"]["day"]
    month_requests, month_images, month_credits = report["counts"]["month"]
    if workspace.suspended:
        with ui.row().classes("w-full items-center gap-2 studio-card px-4 py-3"):
            ui.icon("block", color="negative")
            ui.label("This account is suspended: generation is paused. Contact the administrator.") \
                .classes("text-sm").mark("suspended-note")
    with ui.row().classes("items-center gap-2"):
        ui.label("Plan").classes("studio-muted")
        ui.chip(plan.name if plan else "none", color="primary", text_color="white").props("square") \
            .mark("plan-name")
        if plan:
            ui.label(f"{plan.requests_per_minute}/min · {plan.max_concurrent_jobs} at a time · batches of "
                     f"{plan.max_batch_size}").classes("text-sm studio-muted")

    def of(used: int, limit: int | None) -> tuple[str, float | None]:
        return (f"of {limit:,}", used / limit if limit else 1.0) if limit is not None else ("", None)

    with ui.element("div").classes("grid grid-cols-2 lg:grid-cols-4 gap-3 w-full"):
        detail, fraction = of(day_requests, plan.requests_per_day if plan else None)
        stat("Requests today", f"{day_requests:,}", detail, fraction, "today-requests")
        detail, fraction = of(month_requests, plan.requests_per_month if plan else None)
        stat("Requests this month", f"{month_requests:,}", detail, fraction, "month-requests")
        stat("Images", f"{day_images:,}", f"today · {month_images:,} this month", None, "images")
        monthly = plan.monthly_credits if plan else 0
        stat("Credits left", f"{workspace.credits:,}", f"{day_credits:,} used today · {month_credits:,} this month"
             + (f" · {monthly:,} a month" if monthly else ""),
             (1 - workspace.credits / monthly) if monthly else None, "credits")

    history = data.history
    with card("Last 30 days", icon="bar_chart"):
        ui.echart({
            "tooltip": {"trigger": "axis"},
            "legend": {"data": ["Requests", "Images"], "top": 0, "right": 0, "textStyle": {"color": "#8e8aa3"}},
            "grid": {"left": 40, "right": 16, "top": 40, "bottom": 28},
            "xAxis": {"type": "category", "data": [d["date"][5:] for d in history],
                      "axisLabel": {"color": "#8e8aa3"}},
            "yAxis": {"type": "value", "minInterval": 1, "axisLabel": {"color": "#8e8aa3"},
                      "splitLine": {"lineStyle": {"color": "rgba(140,130,170,.18)"}}},
            "series": [
                {"name": "Requests", "type": "bar", "data": [d["requests"] for d in history],
                 "itemStyle": {"color": "#7c3aed", "borderRadius": [4, 4, 0, 0]}},
                {"name": "Images", "type": "bar", "data": [d["images"] for d in history],
                 "itemStyle": {"color": "#ec4899", "borderRadius": [4, 4, 0, 0]}},
            ],
        }).classes("w-full h-64").mark("usage-chart")

    with card("Recent API requests", icon="receipt_long"):
        logs = data.logs
        if not logs:
            empty_state("receipt_long", "No API requests yet", "Requests made with your API keys show up here.")
            return
        columns = [{"name": "time", "label": "Time", "field": "time", "align": "left"},
                   {"name": "key", "label": "Key", "field": "key", "align": "left"},
                   {"name": "endpoint", "label": "Endpoint", "field": "endpoint", "align": "left"},
                   {"name": "status", "label": "Status", "field": "status"},
                   {"name": "ms", "label": "ms", "field": "ms"},
                   {"name": "credits", "label": "Credits", "field": "credits"},
                   {"name": "request", "label": "Request id", "field": "request", "align": "left",
                    "classes": "font-mono text-xs", "headerClasses": "", }]
        rows = [{"id": log.id, "time": when(log.created_at).removesuffix(" UTC"),
                 "key": f"sk_live_{log.key_prefix}…" if log.key_prefix and log.key_prefix != "session"
                 else (log.key_prefix or "—"),
                 "endpoint": f"{log.method} {log.endpoint}", "status": log.status, "ms": log.duration_ms,
                 "credits": log.credits, "request": log.request_id} for log in logs]
        ui.table(columns=columns, rows=rows, row_key="id").props("flat dense wrap-cells") \
            .classes("w-full bg-transparent").mark("api-log")
