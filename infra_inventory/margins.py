"""Margin guardrails: days on which a customer's usage of a model tier earned less than the
hardware and power allocated to it are recorded and announced, once each.

A day is checked only when it is closed and every hour of it is allocated and current
(services.hours_stale finds none): an hour still waiting for late events or readings is
allocated by the hourly job first, and the day is checked on a later run. Revenue is the
unit-economics revenue (rated at the unit prices in force, before contract-level
discounts); cost is the exact allocated hardware + power. A (day, customer, tier) is
recorded once, by the unique constraint, and the `margin.negative` webhook is written in
the same transaction as the record, so each alert is announced exactly once even when two
checks run at the same time or the same check runs twice.

A (day, customer, tier) with usage a rental covers (served on the customer's rented
cluster, `covered_tokens`) is not checked: that usage earns nothing per token by design,
the rental pays for the whole cluster, so a per-tier comparison would cry wolf.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction

from billing.rating import round_cents
from billing.rating.money import money_text
from billing.services.webhooks import webhook_event_publish
from infra_inventory.models import MarginAlert
from infra_inventory.selectors import unit_economics
from infra_inventory.services import hours_stale

DAY = timedelta(days=1)
EVENT = "margin.negative"


@dataclass(frozen=True)
class MarginCheck:
    days_checked: list[datetime]
    days_skipped: list[datetime]  # not closed, or with hours not (re)allocated yet
    alerts: list[MarginAlert]  # recorded (and announced) by this check


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def alert_payload(alert: MarginAlert) -> dict:
    """What is announced and listed; cost shown to the cent (ROUND_HALF_UP), margin from the shown figures."""
    cost = round_cents(alert.cost)
    return {
        "day": alert.day.isoformat(), "customer_id": alert.customer_id, "model_tier": alert.model_tier,
        "tokens": alert.tokens, "currency": "USD", "revenue": money_text(alert.revenue), "cost": money_text(cost),
        "gross_margin": money_text(alert.revenue - cost),
    }


@transaction.atomic
def margin_alerts_record(*, start: datetime, end: datetime, as_of: datetime) -> MarginCheck:
    """Check every closed UTC day in [start, end) (widened to whole days); record and
    announce each (day, customer, model tier) below cost not recorded before."""
    start, end = _midnight(start), min(_midnight(end + DAY - timedelta(microseconds=1)), _midnight(as_of))
    if end <= start:
        return MarginCheck(days_checked=[], days_skipped=[], alerts=[])
    stale_days = {_midnight(hour) for hour in hours_stale(start=start, end=end)}
    days = [start + n * DAY for n in range((end - start) // DAY)]
    checked = [d for d in days if d not in stale_days]
    alerts = []
    economics = unit_economics(start=start, end=end, group_by=("day", "customer", "model_tier"))
    for row in economics.rows:
        day, customer_id, tier = row.keys["day"], row.keys["customer"], row.keys["model_tier"]
        figures = row.figures
        if (day in stale_days or tier is None or figures.revenue is None or figures.covered_tokens
                or figures.revenue >= figures.cost):
            continue
        alert, created = MarginAlert.objects.get_or_create(
            day=day.date(), customer_id=customer_id, model_tier=tier,
            defaults={"tokens": figures.tokens, "revenue": figures.revenue, "cost": figures.cost,
                      "announced_at": as_of})
        if created:
            webhook_event_publish(event=EVENT, payload=alert_payload(alert), at=as_of)
            alerts.append(alert)
    return MarginCheck(days_checked=checked, days_skipped=sorted(stale_days & set(days)), alerts=alerts)

