"""Scheduled allocation and margin guardrails (beat schedule in config/celery.py)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from infra_inventory.margins import margin_alerts_record
from infra_inventory.services import costs_allocate_stale
from metering.services import utc_now


@shared_task
def costs_allocate_task() -> int:
    """Allocate each closed hour, and again any hour a late event or reading changed,
    back as far as events may still arrive (the lateness limit)."""
    now = utc_now().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=settings.USAGE_LATENESS_DAYS + 1)
    return len(costs_allocate_stale(start=start, end=now, as_of=utc_now()))


@shared_task
def margin_alerts_record_task() -> int:
    """Check every closed day as far back as events may still arrive: a day that late usage
    pushed below cost is announced then; one announced before is never announced again."""
    now = utc_now()
    start = now - timedelta(days=settings.USAGE_LATENESS_DAYS + 1)
    return len(margin_alerts_record(start=start, end=now, as_of=now).alerts)
