"""Reads of metering data, for this app's APIs and for other apps."""

from datetime import datetime

from django.db.models import Max, Min, Sum

from metering.models import (
    CatalogModel, ConsumerWatermark, Customer, HourlyRollup, ModelTierChange, ServiceTier, UsageAdjustment, UsageSegment,
)
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


def usage_segment_rows(*, customer_ids: list[str], start: datetime, end: datetime) -> list[tuple]:
    """(customer_id, model, service_tier, cluster, starts_at, then the sums of FIELDS) of the
    usage segments starting in [start, end), for these customers."""
    return list(UsageSegment.objects.filter(customer_id__in=customer_ids, starts_at__gte=start, starts_at__lt=end)
                .values_list("customer_id", "model", "service_tier", "cluster", "starts_at", *TOKEN_FIELDS))


def ledger_exact_as_of(*, topic: str) -> datetime | None:
    """The instant up to which every event produced to `topic` is in the ledger: the
    oldest of its partitions' watermarks (None before a consumer has caught up once)."""
    return ConsumerWatermark.objects.filter(topic=topic).aggregate(at=Min("caught_up_at"))["at"]
