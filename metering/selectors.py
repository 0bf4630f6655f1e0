"""Reads of metering data, for this app's APIs and for other apps."""

from datetime import datetime

from django.db.models import Sum

from metering.models import CatalogModel, Customer, HourlyRollup, ModelTierChange
from metering.schemas import Catalog

TOKEN_FIELDS = ("events", "input_tokens", "cached_input_tokens", "output_tokens")


def catalog_current() -> Catalog:
    """What events may name right now."""
    return Catalog(
        customers=frozenset(Customer.objects.values_list("customer_id", flat=True)),
        models=frozenset(CatalogModel.objects.values_list("name", flat=True)),
    )


def usage_hourly_rows(*, customer_id: str | None, start: datetime, end: datetime):
    """Hourly rollup rows over [start, end), every dimension kept."""
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    if customer_id is not None:
        rollups = rollups.filter(customer_id=customer_id)
    return rollups.values("customer_id", "model", "service_tier", "region", "cluster", "hour", *TOKEN_FIELDS)


def model_tier_at(model: str, at: datetime) -> str | None:
    """The tier a model is priced by at an instant (None before its first tier)."""
    change = ModelTierChange.objects.filter(model__name=model, effective_from__lte=at).order_by("-effective_from")
    return change.values_list("tier", flat=True).first()


def model_tier_history() -> list[ModelTierChange]:
    return list(ModelTierChange.objects.select_related("model").order_by("model__name", "effective_from"))


def rollup_token_rows(*, customer_ids: list[str] | None, start: datetime, end: datetime):
    """Per (customer, model, service tier, hour) token sums over [start, end), for rating."""
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    if customer_ids is not None:
        rollups = rollups.filter(customer_id__in=customer_ids)
    return (
        rollups.values("customer_id", "model", "service_tier", "hour")
        .annotate(input_tokens=Sum("input_tokens"), cached_input_tokens=Sum("cached_input_tokens"),
                  output_tokens=Sum("output_tokens"))
        .order_by()
        .values_list("customer_id", "model", "service_tier", "hour", "input_tokens", "cached_input_tokens",
                     "output_tokens")
    )


def usage_keys_since(start: datetime) -> set[tuple[str, str, str, datetime]]:
    """(model, service tier, token class, hour) that has tokens from `start` on, any customer."""
    rows = (
        HourlyRollup.objects.filter(hour__gte=start).values("model", "service_tier", "hour")
        .annotate(i=Sum("input_tokens"), c=Sum("cached_input_tokens"), o=Sum("output_tokens")).order_by()
    )
    keys = set()
    for row in rows:
        for token_class, tokens in (("input", row["i"] - row["c"]), ("cached_input", row["c"]), ("output", row["o"])):
            if tokens:
                keys.add((row["model"], row["service_tier"], token_class, row["hour"]))
    return keys
