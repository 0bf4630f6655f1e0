"""The Celery app and the whole beat schedule."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tokenledger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "ledger-partitions-ahead": {
        "task": "metering.tasks.ledger_partitions_ensure_task",
        "schedule": crontab(minute=7, hour=3),
    },
}
