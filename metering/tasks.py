"""Scheduled metering work (beat schedule in config/celery.py)."""

from celery import shared_task

from metering.services import ledger_partitions_ahead, utc_now


@shared_task
def ledger_partitions_ensure_task() -> list[str]:
    """Keep ledger partitions three months ahead, so no event waits on DDL."""
    return ledger_partitions_ahead(as_of=utc_now())
