"""Signed webhook deliveries: recorded in the same transaction as the event, sent by
Celery after commit, retried with exponential backoff until the receiver says 2xx. A
delivery whose destination is not a public HTTPS address is refused, once and for good
(billing.services.webhook_destinations)."""

import hashlib
import hmac
import http.client
import json
import time
from datetime import datetime

from django.db import transaction

from billing.models import WebhookDelivery, WebhookEndpoint
from billing.services.webhook_destinations import WebhookUrlRefused, webhook_destination, webhook_post
from config.metrics.counters import webhook_attempted, webhook_given_up

SIGNATURE_HEADER = "Tokenledger-Signature"
TIMEOUT_S = 10


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the timestamp is signed
    too, so a receiver can refuse replays of old deliveries."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_verify(*, secret: str, header: str, body: bytes, tolerance_s: int = 300,
                     now: float | None = None) -> bool:
    """What a receiver does: recompute and compare in constant time, within a tolerance."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    expected = signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, header)


def webhook_event_publish(*, event: str, payload: dict, at: datetime | None = None) -> list[WebhookDelivery]:
    """Record one delivery per interested endpoint; send each once the transaction commits."""
    from billing.tasks import webhook_deliver_task
    from metering.services import utc_now

    created_at = at or utc_now()
    deliveries = [
        WebhookDelivery.objects.create(endpoint=endpoint, event=event, created_at=created_at,
                                       payload={"type": event, "created_at": created_at.isoformat(), "data": payload})
        for endpoint in WebhookEndpoint.objects.filter(active=True) if endpoint.wants(event)
    ]
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: webhook_deliver_task.delay(delivery_id=pk))
    return deliveries


def webhook_deliver(*, delivery_id: int, as_of: datetime) -> str:
    """One attempt. Returns the delivery's status: delivered (now or before), refused (its
    destination is not public, never to be retried) or pending (to be retried)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if delivery.status in (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.REFUSED):
        return delivery.status
    body = json.dumps({"id": delivery.pk, **delivery.payload}, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json", "Tokenledger-Event": delivery.event,
        "Tokenledger-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: signature(secret=delivery.endpoint.secret, timestamp=int(as_of.timestamp()), body=body),
    }
    try:
        destination = webhook_destination(delivery.endpoint.url)
    except WebhookUrlRefused as exc:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            attempts=delivery.attempts + 1, last_status_code=None, last_error=f"refused: {exc}",
            status=WebhookDelivery.Status.REFUSED)
        webhook_given_up()
        return WebhookDelivery.Status.REFUSED
    except OSError as exc:  # the name did not resolve (now): retried
        destination, error = None, f"DNS: {exc}"
    status = None
    if destination is not None:
        try:
            status = webhook_post(destination, body=body, headers=headers, timeout=TIMEOUT_S)
            error = "" if 200 <= status < 300 else f"HTTP {status}"
            if 300 <= status < 400:
                error += " (redirects are not followed)"
        except (OSError, http.client.HTTPException) as exc:
            error = str(exc) or type(exc).__name__
    delivered = status is not None and 200 <= status < 300
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        attempts=delivery.attempts + 1, last_status_code=status, last_error=error,
        status=WebhookDelivery.Status.DELIVERED if delivered else WebhookDelivery.Status.PENDING,
        delivered_at=as_of if delivered else None,
    )
    webhook_attempted(event=delivery.event, delivered=delivered)
    return WebhookDelivery.Status.DELIVERED if delivered else WebhookDelivery.Status.PENDING


def webhook_give_up(*, delivery_id: int) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id).update(status=WebhookDelivery.Status.FAILED)
    webhook_given_up()
