"""Reads of metering data, for this app's APIs and for other apps."""

from datetime import datetime

from django.db import connection
from django.db.models import Max, Sum

from metering.models import CatalogModel, Customer, HourlyRollup, ModelTierChange, ServiceTier, UsageAdjustment
from metering.schemas import Catalog
from metering.token_classes import FIELDS as TOKEN_FIELDS
from metering.token_classes import priced


def catalog_current() -> Catalog:
    """What events may name right now."""
    return Catalog(
        customers=frozenset(Customer.objects.values_list("customer_id", flat=True)),
        models=frozenset(CatalogModel.objects.values_list("name", flat=True)),
        service_tiers=frozenset(ServiceTier.objects.values_list("name", flat=True)),
    )


def usage_hourly_rows(*, customer_id: str | None, start: datetime, end: datetime):
    """Hourly rollup rows over [start, end), every dimension kept."""
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    if customer_id is not None:
        rollups = rollups.filter(customer_id=customer_id)
    return rollups.values("customer_id", "model", "service_tier", "region", "cluster", "hour", "events",
                          *TOKEN_FIELDS)


def model_tier_at(model: str, at: datetime) -> str | None:
    """The tier a model is priced by at an instant (None before its first tier)."""
    change = ModelTierChange.objects.filter(model__name=model, effective_from__lte=at).order_by("-effective_from")
    return change.values_list("tier", flat=True).first()


def model_tier_history() -> list[ModelTierChange]:
    return list(ModelTierChange.objects.select_related("model").order_by("model__name", "effective_from"))


def rollup_hourly_sums(*, customer_ids: list[str] | None, start: datetime, end: datetime) -> list[tuple]:
    """(customer_id, model, service_tier, hour, then the sums of token_classes.FIELDS) over
    [start, end), summed over regions and clusters: what rating needs."""
    customer_filter = "AND customer_id = ANY(%(customers)s)" if customer_ids is not None else ""
    sql = f"""
        SELECT customer_id, model, service_tier, hour, {", ".join(f"sum({name})::bigint" for name in TOKEN_FIELDS)}
        FROM metering_hourly_rollup
        WHERE hour >= %(start)s AND hour < %(end)s {customer_filter}
        GROUP BY 1, 2, 3, 4
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": start, "end": end, "customers": customer_ids})
        return cursor.fetchall()


def usage_keys_since(start: datetime, *, until: datetime | None = None) -> set[tuple[str, str, str, datetime]]:
    """(model, service tier, token class, hour) that has tokens in [start, until), any customer."""
    rollups = HourlyRollup.objects.filter(hour__gte=start)
    if until is not None:
        rollups = rollups.filter(hour__lt=until)
    rows = (
        rollups.values("model", "service_tier", "hour")
        .annotate(**{name: Sum(name) for name in TOKEN_FIELDS}).order_by()
    )
    keys = set()
    for row in rows:
        for token_class, tokens in priced(row).items():
            if tokens:
                keys.add((row["model"], row["service_tier"], token_class, row["hour"]))
    return keys


def adjustments_last_ids(*, customer_ids: list[str]) -> dict[str, int]:
    """The id of each customer's latest usage adjustment (customers without one are absent)."""
    return dict(UsageAdjustment.objects.filter(customer_id__in=customer_ids).values("customer_id")
                .annotate(last=Max("id")).values_list("customer_id", "last"))


def adjustment_hourly_sums(*, customer_id: str, start: datetime, end: datetime, after_id: int) -> list[tuple]:
    """Like `rollup_hourly_sums`, of the differences the customer's adjustments numbered
    after `after_id` make to usage served in [start, end)."""
    sql = f"""
        SELECT customer_id, model, service_tier, date_trunc('hour', occurred_at, 'UTC') AS hour,
               {", ".join(f"sum({name})::bigint" for name in TOKEN_FIELDS)}
        FROM metering_usage_adjustment
        WHERE customer_id = %(customer)s AND occurred_at >= %(start)s AND occurred_at < %(end)s AND id > %(after)s
        GROUP BY 1, 2, 3, 4
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"customer": customer_id, "start": start, "end": end, "after": after_id})
        return cursor.fetchall()
