"""Reads of the cost allocation: unit economics (DESIGN.md §4) and cost per cluster-day.

Rounding, decided here once:
- Costs and energy are stored exactly, in micro-dollars and micro-kWh (the allocation core
  fixes each cluster-hour to micro-dollars and splits it by largest remainder), and are
  summed exactly. Every cost figure shown is its exact sum rounded ROUND_HALF_UP to cents,
  once, when it is shown (`Figures.*_shown`).
- Sums of shown figures are computed from the shown figures, as an invoice's total is the
  sum of its rounded lines, so that on every row and in the totals these hold exactly, to
  the cent, as printed:
      gross_margin = revenue − hardware_cost − power_cost
      total_cost   = hardware_cost + power_cost + idle_cost
  (total_cost is within 1.5 cents of the exact cluster-hour total; an exact zero, e.g. the
  idle cost of a cluster busy every hour, always shows as 0.00).
- Revenue comes from the rating engine (billing.rating.usage_amount): per output row and
  customer, the tokens of each (model, service tier, token class, unit price) — every
  priced class the allocation rows carry (metering.token_classes.priced, computed when
  allocating; a class with no tokens needs no price, one served without a price leaves the
  revenue unknown, None) — are summed
  and rounded to cents once, as on an invoice line, at the book price or the contract's
  unit-price override in force at each hour, before contract-level discounts, minimums,
  credits and graduated volume tiers. Only allocated usage earns revenue here: unplaced
  usage is counted in `unplaced_tokens`, never priced against a cost it did not bear.
- margin_percent = gross_margin / revenue × 100 and the per-1M-token rates are rounded
  ROUND_HALF_UP (2 and 6 places); energy is shown to 3 places (Wh).
Rows are rounded one by one, so a column's rows may add up to a few cents more or less
than the totals, which are exact sums rounded once.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.db.models import Sum

from billing.rating import ContractTerms, PriceMissing, Quantity, round_cents, usage_amount
from billing.selectors import month_bounds, price_schedule, terms_for_customers
from infra_inventory.allocation import TOKEN_CLASSES
from infra_inventory.models import (
    TOKEN_COLUMNS, AllocatedHour, Cluster, ClusterHourCost, CostAllocation, MarginAlert, UnplacedUsage,
)

ECONOMICS_GROUP_KEYS = ("model", "model_tier", "customer", "cluster", "datacenter", "vendor", "day")
FLEET_KEYS = frozenset({"cluster", "datacenter", "vendor", "day"})  # idle cost can be attributed to these
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


def _half_up(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Figures:
    """Token and money sums of one row (or of the totals). Costs and energy exact.

    `fleet_*` are the cluster-hour totals behind the row (allocated + idle): known for the
    totals and for rows grouped only by cluster, datacenter, vendor and day, None otherwise
    (idle capacity belongs to no customer or model)."""

    input_tokens: int = 0  # TOKEN_FIGURES: the priced classes (metering.token_classes.priced), then reasoning
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_long_tokens: int = 0
    audio_input_tokens: int = 0
    output_tokens: int = 0
    audio_output_tokens: int = 0
    reasoning_tokens: int = 0  # part of output + audio output: reported, not added to `tokens`
    revenue: Decimal | None = ZERO  # cents; None when some of the usage has no price
    hardware_cost: Decimal = ZERO
    power_cost: Decimal = ZERO
    energy_kwh: Decimal = ZERO
    fleet_hardware_cost: Decimal | None = None
    fleet_power_cost: Decimal | None = None
    fleet_energy_kwh: Decimal | None = None
    cluster_hours: int | None = None

    @property
    def tokens(self) -> int:
        return (self.input_tokens + self.cached_input_tokens + self.cache_write_tokens + self.cache_write_long_tokens
                + self.audio_input_tokens + self.output_tokens + self.audio_output_tokens)

    @property
    def cost(self) -> Decimal:
        return self.hardware_cost + self.power_cost

    @property
    def hardware_cost_shown(self) -> Decimal:
        return round_cents(self.hardware_cost)

    @property
    def power_cost_shown(self) -> Decimal:
        return round_cents(self.power_cost)

    @property
    def gross_margin_shown(self) -> Decimal | None:
        if self.revenue is None:
            return None
        return self.revenue - self.hardware_cost_shown - self.power_cost_shown

    @property
    def margin_percent_shown(self) -> Decimal | None:
        if self.revenue is None or self.revenue == 0:
            return None
        return _half_up(self.gross_margin_shown * 100 / self.revenue, "0.01")

    @property
    def cost_per_million_tokens(self) -> Decimal | None:
        return _half_up(self.cost * MILLION / self.tokens, "0.000001") if self.tokens else None

    @property
    def kwh_per_million_tokens(self) -> Decimal | None:
        return _half_up(self.energy_kwh * MILLION / self.tokens, "0.000001") if self.tokens else None

    @property
    def idle_cost(self) -> Decimal | None:
        """Exact."""
        if self.fleet_hardware_cost is None:
            return None
        return self.fleet_hardware_cost + self.fleet_power_cost - self.cost

    @property
    def idle_energy_kwh(self) -> Decimal | None:
        return None if self.fleet_energy_kwh is None else self.fleet_energy_kwh - self.energy_kwh

    @property
    def idle_cost_shown(self) -> Decimal | None:
        return None if self.fleet_hardware_cost is None else round_cents(self.idle_cost)

    @property
    def total_cost_shown(self) -> Decimal | None:
        idle = self.idle_cost_shown
        return None if idle is None else self.hardware_cost_shown + self.power_cost_shown + idle

    def __add__(self, other: "Figures") -> "Figures":
        def both(a, b):
            if a is None or b is None:
                return b if a is None else a
            return a + b

        return Figures(
            **{name: getattr(self, name) + getattr(other, name) for name in TOKEN_FIGURES},
            revenue=None if self.revenue is None or other.revenue is None else self.revenue + other.revenue,
            hardware_cost=self.hardware_cost + other.hardware_cost, power_cost=self.power_cost + other.power_cost,
            energy_kwh=self.energy_kwh + other.energy_kwh,
            fleet_hardware_cost=both(self.fleet_hardware_cost, other.fleet_hardware_cost),
            fleet_power_cost=both(self.fleet_power_cost, other.fleet_power_cost),
            fleet_energy_kwh=both(self.fleet_energy_kwh, other.fleet_energy_kwh),
            cluster_hours=both(self.cluster_hours, other.cluster_hours),
        )


# Figures' token counts: the allocation's token columns. Each is named after its priced
# class, but reasoning, which has none (it is priced as the output it is part of).
TOKEN_FIGURES = TOKEN_COLUMNS
PRICED_CLASS = {f"{token_class}_tokens": token_class for token_class in TOKEN_CLASSES}


@dataclass(frozen=True)
class EconomicsRow:
    keys: dict  # group key → value (`customer` as customer_id, `day` as its 00:00 UTC instant)
    figures: Figures


@dataclass(frozen=True)
class UnitEconomics:
    start: datetime
    end: datetime
    group_by: tuple[str, ...]
    rows: list[EconomicsRow]
    totals: Figures  # over the whole range; fleet_* always known
    unplaced_tokens: int
    hours_not_allocated: int  # hours of the range the allocation has not covered yet


class Pricing:
    """The price schedule, and each month's governing contract terms (as the month's
    invoice uses them), loaded once per read."""

    def __init__(self):
        self.schedule = price_schedule()
        self._terms: dict[datetime, dict[str, ContractTerms]] = {}

    def terms(self, customer_id: str, month: datetime) -> ContractTerms:
        if month not in self._terms:
            start, end = month_bounds(month)
            self._terms[month] = terms_for_customers(customer_ids=None, start=start, end=end)
        return self._terms[month].get(customer_id, ContractTerms())

    def tier(self, model: str, at: datetime) -> str | None:
        try:
            return self.schedule.tier_at(model, at)
        except PriceMissing:
            return None


def _boundaries(pricing: Pricing, start: datetime, end: datetime, *, daily: bool) -> list[datetime]:
    """`start` and every instant in (start, end) where a month, a tier, a price (or, when
    grouping by day, a day) begins: the hours between two are priced alike."""
    instants = {start, *pricing.schedule.boundaries(start, end)}
    month = month_bounds(start)[1]
    while month < end:
        instants.add(month)
        month = month_bounds(month)[1]
    if daily:
        day = start.replace(hour=0) + DAY
        while day < end:
            instants.add(day)
            day += DAY
    return sorted(instants)


ALLOCATION_SQL = f"""
    SELECT width_bucket(hour, %(bounds)s::timestamptz[]), cluster_id, customer_id, model, service_tier,
           {", ".join(f"sum({name})::bigint" for name in TOKEN_FIGURES)}, sum(hardware_cost), sum(power_cost),
           sum(energy_kwh)
    FROM {CostAllocation._meta.db_table} WHERE hour >= %(start)s AND hour < %(end)s
    GROUP BY 1, 2, 3, 4, 5
"""
CLUSTER_HOUR_SQL = f"""
    SELECT width_bucket(hour, %(bounds)s::timestamptz[]), cluster_id, sum(hardware_cost), sum(power_cost),
           sum(energy_kwh), count(*)
    FROM {ClusterHourCost._meta.db_table} WHERE hour >= %(start)s AND hour < %(end)s
    GROUP BY 1, 2
"""


def _fetch(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _clusters() -> dict[int, Cluster]:
    return {c.pk: c for c in Cluster.objects.select_related("datacenter", "sku")}


def _fleet_keys(cluster: Cluster, segment: datetime) -> dict:
    return {"cluster": cluster.name, "datacenter": cluster.datacenter.name, "vendor": cluster.sku.vendor,
            "day": segment.replace(hour=0, minute=0, second=0, microsecond=0)}


def _economics(*, start: datetime, end: datetime, group_by: tuple[str, ...], pricing: Pricing,
               clusters: dict[int, Cluster]) -> tuple[list[EconomicsRow], Figures]:
    """Rows of [start, end) by `group_by`, and the totals (fleet figures included)."""
    bounds = _boundaries(pricing, start, end, daily="day" in group_by)
    params = {"bounds": bounds, "start": start, "end": end}
    sums: dict[tuple, Figures] = defaultdict(Figures)
    quantities: dict[tuple, dict[tuple, list[Quantity]]] = defaultdict(lambda: defaultdict(list))
    for bucket, cluster_id, customer_id, model, service_tier, *sums_of_row in _fetch(ALLOCATION_SQL, params):
        *counts, hw, pw, kwh = sums_of_row
        segment = bounds[bucket - 1]
        keys = {**_fleet_keys(clusters[cluster_id], segment), "model": model, "customer": customer_id,
                "model_tier": pricing.tier(model, segment)}
        key = tuple(keys[k] for k in group_by)
        tokens = dict(zip(TOKEN_FIGURES, counts))
        sums[key] += Figures(**tokens, hardware_cost=hw, power_cost=pw, energy_kwh=kwh)
        # As billing rates them: a class with no tokens gives no quantity, and needs no price.
        quantities[key][(customer_id, month_bounds(segment)[0])].extend(
            Quantity(model, service_tier, token_class, segment, tokens[name])
            for name, token_class in PRICED_CLASS.items() if tokens[name])
    fleet = Figures(fleet_hardware_cost=ZERO, fleet_power_cost=ZERO, fleet_energy_kwh=ZERO, cluster_hours=0)
    with_fleet = set(group_by) <= FLEET_KEYS
    for bucket, cluster_id, hw, pw, kwh, hours in _fetch(CLUSTER_HOUR_SQL, params):
        part = Figures(fleet_hardware_cost=hw, fleet_power_cost=pw, fleet_energy_kwh=kwh, cluster_hours=hours)
        fleet += part
        if with_fleet:
            keys = _fleet_keys(clusters[cluster_id], bounds[bucket - 1])
            sums[tuple(keys[k] for k in group_by)] += part
    rows = []
    for key in sorted(sums, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        revenue = _revenue(quantities.get(key, {}), pricing)
        rows.append(EconomicsRow(keys=dict(zip(group_by, key)), figures=replace(sums[key], revenue=revenue)))
    totals = sum((row.figures for row in rows), Figures())
    totals = replace(totals, fleet_hardware_cost=fleet.fleet_hardware_cost, fleet_power_cost=fleet.fleet_power_cost,
                     fleet_energy_kwh=fleet.fleet_energy_kwh, cluster_hours=fleet.cluster_hours)
    return rows, totals


def _revenue(quantities: dict[tuple, list[Quantity]], pricing: Pricing) -> Decimal | None:
    """What the row's usage earns: per customer and month, the rating engine's usage amount."""
    revenue = ZERO
    for (customer_id, month), items in quantities.items():
        try:
            revenue += usage_amount(usage=items, schedule=pricing.schedule, terms=pricing.terms(customer_id, month))
        except PriceMissing:
            return None
    return revenue


def unit_economics(*, start: datetime, end: datetime, group_by: list[str] | tuple[str, ...]) -> UnitEconomics:
    """Unit economics of [start, end) (on the hour) by any of ECONOMICS_GROUP_KEYS, from the
    allocation projection (run costs_allocate first). Rounding: see the module docstring."""
    group_by, start, end = tuple(group_by), start.astimezone(UTC), end.astimezone(UTC)
    unknown = set(group_by) - set(ECONOMICS_GROUP_KEYS)
    if unknown:
        raise ValueError(f"unknown group keys: {', '.join(sorted(unknown))}")
    rows, totals = _economics(start=start, end=end, group_by=group_by, pricing=Pricing(), clusters=_clusters())
    unplaced = UnplacedUsage.objects.filter(hour__gte=start, hour__lt=end).aggregate(n=Sum("tokens"))["n"] or 0
    allocated = AllocatedHour.objects.filter(hour__gte=start, hour__lt=end).count()
    return UnitEconomics(start=start, end=end, group_by=group_by, rows=rows, totals=totals, unplaced_tokens=unplaced,
                         hours_not_allocated=int((end - start) / HOUR) - allocated)


@dataclass(frozen=True)
class ClusterDayCost:
    """What one cluster cost over one UTC day (or the part of it inside the range)."""

    cluster: Cluster
    start: datetime
    end: datetime
    figures: Figures = field(default_factory=Figures)  # fleet_* always known


def cluster_day_costs(*, start: datetime, end: datetime) -> Iterator[ClusterDayCost]:
    """Per cluster and UTC day of [start, end), day by day (so a long range streams): the
    cluster-hour cost, the part of it allocated, the tokens served and the revenue they
    earned. Summed over all, the costs equal unit_economics' totals for the same range."""
    pricing, clusters = Pricing(), _clusters()
    by_name = {c.name: c for c in clusters.values()}
    day, end = start.astimezone(UTC), end.astimezone(UTC)
    while day < end:
        day_end = min(day.replace(hour=0) + DAY, end)
        rows, _ = _economics(start=day, end=day_end, group_by=("cluster",), pricing=pricing, clusters=clusters)
        for row in rows:
            yield ClusterDayCost(cluster=by_name[row.keys["cluster"]], start=day, end=day_end, figures=row.figures)
        day = day_end


def _day_ceiling(moment: datetime) -> datetime:
    midnight = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == moment else midnight + DAY


def margin_alerts(*, start: datetime | None = None, end: datetime | None = None, customer_id: str | None = None):
    """Margin alerts whose day begins in [start, end) (either bound optional)."""
    alerts = MarginAlert.objects.all()
    if start is not None:
        alerts = alerts.filter(day__gte=_day_ceiling(start).date())
    if end is not None:
        alerts = alerts.filter(day__lt=_day_ceiling(end).date())
    if customer_id is not None:
        alerts = alerts.filter(customer_id=customer_id)
    return alerts.order_by("day", "customer_id", "model_tier")
