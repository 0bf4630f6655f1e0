"""Facts read from Postgres when /metrics is scraped: they hold whichever process did the
work, and survive restarts. Each query reads a small table (billing runs, allocated hours).

A run's duration is from started to finished, for runs that finished `done`. A period's
latest run is the one created last: a failed run stops counting once a later run of the
period exists.
"""

import logging
from datetime import timedelta

from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q, Sum
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

RUN_DURATION_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class DatabaseFacts:
    """A custom collector: nothing is kept between scrapes."""

    def collect(self):
        up = GaugeMetricFamily("tokenledger_facts_up", "1 if the facts below could be read from Postgres.")
        try:
            families = [*billing_run_families(), *allocation_families(), *balance_families()]
        except DatabaseError as exc:
            logger.warning("metrics: Postgres facts unavailable: %s", exc)
            families = []
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families


def billing_run_families() -> list:
    from billing.models import BillingRun

    Status = BillingRun.Status
    by_status = dict(BillingRun.objects.values_list("status").annotate(n=Count("id")).order_by())
    finished = CounterMetricFamily("tokenledger_billing_runs", "Billing runs finished, by outcome.", labels=["outcome"])
    in_progress = GaugeMetricFamily("tokenledger_billing_runs_in_progress", "Billing runs not finished, by status.",
                                    labels=["status"])
    for status, family in ((Status.DONE, finished), (Status.FAILED, finished), (Status.PENDING, in_progress),
                           (Status.RUNNING, in_progress)):
        family.add_metric([status], by_status.get(status, 0))

    done = BillingRun.objects.filter(status=Status.DONE, started_at__isnull=False, finished_at__isnull=False) \
        .annotate(took=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()))
    totals = done.aggregate(count=Count("id"), sum=Sum("took"), **{
        f"le_{bound}": Count("id", filter=Q(took__lte=timedelta(seconds=bound))) for bound in RUN_DURATION_BUCKETS_S})
    duration = HistogramMetricFamily(
        "tokenledger_billing_run_duration_seconds", "Duration of billing runs that finished done.",
        buckets=[(str(float(b)), totals[f"le_{b}"]) for b in RUN_DURATION_BUCKETS_S] + [("+Inf", totals["count"])],
        sum_value=totals["sum"].total_seconds() if totals["sum"] else 0.0)

    latest_failed = GaugeMetricFamily(
        "tokenledger_billing_latest_run_failed", "1 for each period whose latest billing run failed.",
        labels=["period"])
    latest = BillingRun.objects.order_by("period", "-created_at", "-id").distinct("period").values_list(
        "period", "status")
    for period, status in latest:
        if status == Status.FAILED:
            latest_failed.add_metric([f"{period:%Y-%m}"], 1)

    oldest = GaugeMetricFamily(
        "tokenledger_billing_run_oldest_unfinished_created_timestamp_seconds",
        "When the oldest pending or running billing run was created (absent when none is).")
    oldest_at = BillingRun.objects.filter(status__in=[Status.PENDING, Status.RUNNING]).aggregate(
        at=Min("created_at"))["at"]
    if oldest_at is not None:
        oldest.add_metric([], oldest_at.timestamp())
    return [finished, in_progress, duration, latest_failed, oldest]


def allocation_families() -> list:
    from infra_inventory.models import AllocatedHour

    latest = AllocatedHour.objects.aggregate(hour=Max("hour"), at=Max("allocated_at"))
    hour = GaugeMetricFamily("tokenledger_allocation_latest_hour_timestamp_seconds",
                             "Start of the latest hour whose cost is allocated (absent before the first).")
    run = GaugeMetricFamily("tokenledger_allocation_last_run_timestamp_seconds",
                            "When an hour was last allocated (absent before the first).")
    if latest["hour"] is not None:
        hour.add_metric([], latest["hour"].timestamp())
        run.add_metric([], latest["at"].timestamp())
    return [hour, run]


def balance_families() -> list:
    from billing.models import SpendAlert
    from metering.models import ConsumerWatermark

    exact = GaugeMetricFamily("tokenledger_ledger_exact_as_of_timestamp_seconds",
                              "Per topic, the instant before which every produced event is in the ledger (the oldest "
                              "partition's watermark): what balances are exact up to.", labels=["topic"])
    for row in ConsumerWatermark.objects.values("topic").annotate(at=Min("caught_up_at")):
        exact.add_metric([row["topic"]], row["at"].timestamp())
    alerts = CounterMetricFamily("tokenledger_spend_alerts", "Spend alerts announced, by kind.", labels=["kind"])
    for row in SpendAlert.objects.values("kind").annotate(n=Count("id")):
        alerts.add_metric([row["kind"]], row["n"])
    return [exact, alerts]


FACTS = CollectorRegistry()
FACTS.register(DatabaseFacts())
