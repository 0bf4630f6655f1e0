"""Reads of metering data, for this app's APIs and for other apps."""

from datetime import UTC, datetime

from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import TruncDay

from metering.models import CatalogModel, Customer, HourlyRollup
from metering.schemas import Catalog

USAGE_GROUP_KEYS = ("model", "model_tier", "service_tier", "region", "cluster", "hour", "day")
TOKEN_FIELDS = ("events", "input_tokens", "cached_input_tokens", "output_tokens")


def catalog_current() -> Catalog:
    """What events may name right now."""
    return Catalog(
        customers=frozenset(Customer.objects.values_list("customer_id", flat=True)),
        models=frozenset(CatalogModel.objects.values_list("name", flat=True)),
    )


def usage_rows(*, customer_id: str | None, start: datetime, end: datetime, group_by: list[str]) -> QuerySet:
    """Token sums from the hourly rollups over [start, end), one row per customer and group."""
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    if customer_id is not None:
        rollups = rollups.filter(customer_id=customer_id)
    derived = {
        "model_tier": Subquery(CatalogModel.objects.filter(name=OuterRef("model")).values("tier")[:1]),
        "day": TruncDay("hour", tzinfo=UTC),
    }
    rollups = rollups.annotate(**{k: v for k, v in derived.items() if k in group_by})
    keys = ["customer_id", *group_by]
    return rollups.values(*keys).annotate(**{f: Sum(f) for f in TOKEN_FIELDS}).order_by(*keys)


def usage_row_json(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
