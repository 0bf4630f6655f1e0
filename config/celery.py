"""The Celery app and the whole beat schedule."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tokenledger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from config.metrics import celery_hooks  # noqa: E402,F401  (task metrics; METRICS_PORT for worker and beat)

# The schedule lives in the database (django-celery-beat's DatabaseScheduler), where
# finance staff see and edit it in admin. These are the defaults: `migrate` creates any
# that is missing and never overwrites an edited one (billing.schedule).
BEAT_DEFAULTS = {
    "billing-cycle": {"task": "billing.tasks.billing_cycle_task", "schedule": crontab(minute=15, hour=0),
                      "description": "Daily: refresh drafts; finalize last period once its grace period is over."},
    "billing-runs-watchdog": {"task": "billing.tasks.billing_runs_watchdog_task", "schedule": crontab(minute="*"),
                              "description": "Every minute: send again the chunks of running billing runs whose "
                                             "worker was lost (BILLING_CHUNK_DEADLINE_SECONDS), restart runs left "
                                             "pending, fail a run whose chunk is out of attempts."},
    "allocate-costs": {"task": "infra_inventory.tasks.costs_allocate_task", "schedule": crontab(minute=10),
                       "description": "Hourly: allocate the closed hour, and again hours changed by late data."},
    "margin-guardrails": {"task": "infra_inventory.tasks.margin_alerts_record_task",
                          "schedule": crontab(minute=40, hour=0),
                          "description": "Daily: record and announce (margin.negative) each customer and model "
                                         "tier whose revenue fell below its allocated cost on a closed day."},
    "ledger-partitions-ahead": {"task": "metering.tasks.ledger_partitions_ensure_task",
                                "schedule": crontab(minute=7, hour=3),
                                "description": "Daily: keep ledger partitions three months ahead."},
}
