"""POST /webhooks: a key's webhook secret (shown once) and default callback URL; GET /webhooks/deliveries."""

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentUser, EngineDep
from api.responses import error_responses, ok
from api.schemas import Envelope
from engine.errors import InvalidRequest

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str | None = Field(default=None, max_length=2000,
                            description="Default callback URL for this key's async requests (none: per request)")


class WebhookSecret(BaseModel):
    secret: str = Field(description="`whsec_…`: verifies the `webhook-signature` header; shown only now")
    url: str | None


class Delivery(BaseModel):
    id: str = Field(description="The `webhook-id` header")
    job_id: str
    url: str
    event: str
    status: str = Field(description="pending | delivered | failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


@router.post("", response_model=Envelope[WebhookSecret], responses=error_responses(400, 401))
def configure(body: WebhookSettings, request: Request, user: CurrentUser, engine: EngineDep):
    """Make the calling key a new signing secret (the old one stops verifying) and set its default URL."""
    prefix = request.state.api_key_prefix
    key = engine.webhooks.key_by_prefix(prefix) if prefix != "session" else None
    if key is None:
        raise InvalidRequest("webhooks belong to an API key: call this with the key they are for", field="key")
    secret = engine.webhooks.configure(key.id, body.url)
    return ok({"secret": secret, "url": body.url})


@router.get("/deliveries", response_model=Envelope[DeliveryList], responses=error_responses(401))
def deliveries(user: CurrentUser, engine: EngineDep):
    """Your latest webhook deliveries: where, how often tried, how they were answered."""
    rows = engine.webhooks.deliveries(user.id)
    return ok({"deliveries": [{**row.model_dump(exclude={"payload", "key_id", "user_id"}),
                               "event": row.payload.get("type", ""),
                               "next_attempt_at": row.next_attempt_at if row.status == "pending" else None}
                              for row in rows]})
