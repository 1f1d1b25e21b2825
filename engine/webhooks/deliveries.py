"""Webhook deliveries, signed by the Standard Webhooks scheme (https://www.standardwebhooks.com):
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
with the API key's secret (``whsec_<base64>``). A delivery is a row: any process sends the due ones, each
attempt through the same address rules as input-image fetches, retried with backoff for a day."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col, select

from engine.accounts.keys import SecretUnreadable
from engine.data.db import read_scope, session_scope
from engine.data.tables import ApiKey, ApiLog, WebhookDelivery, utcnow
from engine.errors import DatabaseBusy, InvalidRequest, NotFound
from engine.generation.inputs import InputLimits, SafeFetcher

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# Waits before each retry: about a day in all, then the delivery is given up.
RETRY_DELAYS_S = (5, 60, 300, 1800, 7200, 18000, 36000, 36000)
POLL_S = 1.0
BATCH = 20


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Webhooks:
    def __init__(self, db, keys, allow_private: bool = False, retry_delays_s: tuple[int, ...] = RETRY_DELAYS_S):
        self._db = db
        self._keys = keys  # ServerKeys: the secrets are encrypted at rest
        self.allow_private = allow_private
        self.retry_delays_s = retry_delays_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _fetcher(self) -> SafeFetcher:
        return SafeFetcher(InputLimits(allow_private_hosts=self.allow_private, fetch_timeout_s=10.0))

    def check_url(self, url: str, field: str = "callback_url") -> str:
        """A URL webhooks may go to (http(s), and no private address unless the admin allows an intranet)."""
        if len(url) > 2000:
            raise InvalidRequest(f"{field} is longer than 2000 characters", field=field)
        self._fetcher().check(url, field)
        return url

    # -- a key's settings ------------------------------------------------------------------------
    def configure(self, key_id: str, url: str | None, user_id: str | None = None) -> str:
        """Set the key's default callback URL and make it a new signing secret; the secret, shown only now.
        With ``user_id``, only that user's key."""
        if url:
            self.check_url(url, "url")
        secret = new_secret()
        with session_scope(self._db) as session:
            key = session.get(ApiKey, key_id)
            if key is None or key.revoked_at is not None or (user_id is not None and key.user_id != user_id):
                raise NotFound("no such API key")
            key.webhook_url, key.webhook_secret = url or None, self._keys.encrypt(secret)
            session.add(key)
            session.commit()
        return secret

    def key_by_prefix(self, prefix: str) -> ApiKey | None:
        with read_scope(self._db) as session:
            return session.exec(select(ApiKey).where(ApiKey.prefix == prefix, col(ApiKey.revoked_at).is_(None))).first()

    def deliveries(self, user_id: str, limit: int = 50) -> list[WebhookDelivery]:
        with read_scope(self._db) as session:
            return list(session.exec(select(WebhookDelivery).where(WebhookDelivery.user_id == user_id)
                                     .order_by(col(WebhookDelivery.created_at).desc()).limit(limit)).all())

    # -- sending ---------------------------------------------------------------------------------
    def enqueue(self, key_id: str, user_id: str, job_id: str, url: str, event: str, data: dict) -> str:
        payload = {"type": event, "timestamp": utcnow().isoformat(), "data": data}
        delivery = WebhookDelivery(key_id=key_id, user_id=user_id, job_id=job_id, url=url, payload=payload)
        with session_scope(self._db) as session:
            session.add(delivery)
            session.commit()
        self._wake.set()
        return delivery.id

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="imagestudio-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)  # a delivery under way finishes (its own timeout bounds it)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            try:
                self.send_due()
            except DatabaseBusy:
                log.info("webhooks: the database is busy; trying again shortly")
            except Exception:  # a bug in one delivery must not stop every later one: log it, go on
                log.exception("webhooks: sending failed")

    def send_due(self) -> int:
        """Send the deliveries that are due (claimed one by one, so two processes never send one twice)."""
        with read_scope(self._db) as session:
            due = session.exec(select(WebhookDelivery.id).where(
                WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= utcnow())
                .order_by(WebhookDelivery.next_attempt_at).limit(BATCH)).all()
        sent = 0
        for delivery_id in due:
            claimed = self._claim(delivery_id)
            if claimed is not None:
                self._attempt(claimed)
                sent += 1
        return sent

    def _claim(self, delivery_id: str) -> WebhookDelivery | None:
        """Push the next attempt time out first: whoever moves it owns this attempt."""
        with session_scope(self._db) as session:
            now = utcnow()
            moved = session.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now).values(next_attempt_at=now + timedelta(minutes=5))).rowcount
            session.commit()
            return session.get(WebhookDelivery, delivery_id) if moved else None

    def _attempt(self, delivery: WebhookDelivery) -> None:
        with read_scope(self._db) as session:
            key = session.get(ApiKey, delivery.key_id)
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        status_code, error, secret = None, None, None
        started = time.perf_counter()
        if key is None or not key.webhook_secret:
            error = "the API key has no webhook secret"
        else:
            try:
                secret = self._keys.decrypt(key.webhook_secret)
            except SecretUnreadable:
                secret, error = None, "the key's webhook secret can't be decrypted (was the server secret changed?)"
        if secret is not None:
            headers = {"Content-Type": "application/json", "webhook-id": delivery.id,
                       "webhook-timestamp": str(timestamp),
                       "webhook-signature": sign(secret, delivery.id, timestamp, body)}
            try:
                status_code = self._fetcher().post(delivery.url, body, headers)
            except InvalidRequest as exc:  # refused address, connection failed, timed out
                error = exc.message
        ok = status_code is not None and 200 <= status_code < 300
        attempts = delivery.attempts + 1
        given_up = not ok and attempts > len(self.retry_delays_s)
        with session_scope(self._db) as session:
            row = session.get(WebhookDelivery, delivery.id)
            row.attempts, row.last_status_code, row.last_error = attempts, status_code, (error[:500] if error else None)
            if ok:
                row.status, row.delivered_at = "delivered", utcnow()
            elif given_up:
                row.status = "failed"
            else:
                row.next_attempt_at = utcnow() + timedelta(seconds=self.retry_delays_s[attempts - 1])
            session.add(row)
            # Each attempt in the API log, beside the requests: what went where, and how it was answered.
            session.add(ApiLog(user_id=delivery.user_id, key_prefix=key.prefix if key else None, method="WEBHOOK",
                               endpoint=delivery.url[:200], status=status_code or 0,
                               duration_ms=int((time.perf_counter() - started) * 1000), request_id=delivery.id))
            session.commit()
        if not ok:
            log.info("webhook %s to %s: attempt %d failed (%s)", delivery.id, delivery.url, attempts,
                     error or f"HTTP {status_code}")
