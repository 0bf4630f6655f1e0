"""Celery tasks of billing: thin, keyword-only, safe to run twice."""

from celery import shared_task
from django.conf import settings

from billing.models import WebhookDelivery
from billing.services.billing_runs import (
    BillingRunChunkRetry, billing_cycle, billing_run_chunk, billing_run_fail, billing_run_start, billing_runs_watchdog,
)
from billing.services.webhooks import webhook_deliver, webhook_give_up
from metering.services import utc_now


@shared_task(acks_late=True, reject_on_worker_lost=True)
def billing_run_start_task(*, run_id: int) -> int:
    """Fan a run out in chunks across the workers. Started twice, it sends the chunks not
    done again (harmless: see billing.services.billing_runs)."""
    try:
        chunk_ids = billing_run_start(run_id=run_id, as_of=utc_now())
    except Exception as exc:
        billing_run_fail(run_id=run_id, error=f"{type(exc).__name__}: {exc}", as_of=utc_now())
        raise
    for chunk_id in chunk_ids:
        billing_run_chunk_task.delay(run_id=run_id, chunk_id=chunk_id)
    return len(chunk_ids)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None,
             time_limit=settings.BILLING_CHUNK_TIME_LIMIT_SECONDS)
def billing_run_chunk_task(self, *, run_id: int, chunk_id: int) -> str:
    """One attempt; redelivered if its worker dies; retried while the chunk has attempts
    left (the service counts them and fails the run after the last)."""
    try:
        return billing_run_chunk(chunk_id=chunk_id, as_of=utc_now())
    except BillingRunChunkRetry as exc:
        raise self.retry(countdown=exc.countdown_s) from exc


@shared_task
def billing_runs_watchdog_task() -> list[int]:
    return billing_runs_watchdog(as_of=utc_now())


@shared_task
def billing_cycle_task() -> list[int]:
    return [run.pk for run in billing_cycle(as_of=utc_now())]


@shared_task(bind=True, max_retries=None)
def webhook_deliver_task(self, *, delivery_id: int) -> bool:
    """Deliver; on failure retry after base × 2^n seconds (capped), up to a limit. A refused
    destination is not retried."""
    status = webhook_deliver(delivery_id=delivery_id, as_of=utc_now())
    if status != WebhookDelivery.Status.PENDING:
        return status == WebhookDelivery.Status.DELIVERED
    if self.request.retries >= settings.WEBHOOK_RETRIES_MAX:
        webhook_give_up(delivery_id=delivery_id)
        return False
    countdown = min(settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** self.request.retries, 3600)
    raise self.retry(countdown=countdown)
