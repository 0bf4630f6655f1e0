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
  Usage a renter reports from its rented cluster in the rented hours (the rollup's cluster
  tag, as billing decides it: billing.selectors.billable_hourly_sums) stays in the tokens,
  is counted in `covered_tokens`, and earns no usage revenue: the rental covers it
  (DESIGN.md §2). The renter's untagged usage that the deployment map placed there is
  billed per token, and so priced here too.
- Capacity revenue (DESIGN.md §3 capacity lines, billing.rating.capacity_lines): each
  reservation and rental earns units × hours × unit-hour price for its hours in the range,
  one line per term and per month of the range (per day when grouping by day), rounded to
  cents as an invoice line; `revenue` = usage revenue + `capacity_revenue`. A term shows on
  the rows whose group keys it has a value for, and always in the totals:
      rental:                cluster, datacenter, vendor, ownership (the rented cluster's),
                             customer (the renter), day — where reserved idle shows;
      reservation:           customer, model_tier, day, and, pinned to a cluster, that
                             cluster's cluster, datacenter, vendor, ownership.
  A grouping that has a key the term has no value for (a rental by model or model tier, a
  reservation by model, an unpinned one by any fleet key) does not split it: its rows leave
  it out and the totals hold it, as `capacity_revenue_outside_rows` says, so that always
      Σ rows' capacity_revenue + capacity_revenue_outside_rows = totals' capacity_revenue.
  gross_margin is on allocated cost as before: a rental's revenue also pays for the
  renter's idle hours, shown apart as reserved_idle_cost.
- margin_percent = gross_margin / revenue × 100 and the per-1M-token rates are rounded
  ROUND_HALF_UP (2 and 6 places); energy is shown to 3 places (Wh), emissions in kg to 3
  places (g), gCO2e per 1M tokens to 3 places.
- Rented cluster-hours (DESIGN.md §4): the renter's idle hours are its `reserved_idle_cost`,
  never fleet idle; they show on rows grouped by customer and fleet keys only (they belong
  to no model), and always in the totals, so that
      total_cost = hardware_cost + power_cost + idle_cost + reserved_idle_cost.
- Leased cluster-hours with no lease in force have no cost row: their usage is counted in
  `unpriced_tokens` (and the hours in `unpriced_cluster_hours`), never allocated at 0.
Rows are rounded one by one, so a column's rows may add up to a few cents more or less
than the totals, which are exact sums rounded once.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.db.models import Count, Sum

from billing.rating import (
    CapacityTerm, ContractTerms, PriceMissing, Quantity, capacity_lines, round_cents, usage_amount,
)
from billing.selectors import capacity_terms, month_bounds, price_schedule, rentals_overlapping, terms_for_customers
from infra_inventory.allocation import TOKEN_CLASSES
from infra_inventory.models import (
    TOKEN_COLUMNS, AllocatedHour, Cluster, ClusterHourCost, CostAllocation, MarginAlert, UnplacedUsage,
    UnpricedClusterHour,
)
from metering.models import HourlyRollup
from metering.token_classes import priced_sql

ECONOMICS_GROUP_KEYS = ("model", "model_tier", "customer", "cluster", "datacenter", "vendor", "ownership", "day")
FLEET_KEYS = frozenset({"cluster", "datacenter", "vendor", "ownership", "day"})  # idle cost can be attributed to these
RESERVED_KEYS = FLEET_KEYS | {"customer"}  # reserved idle can be attributed to these
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
    revenue: Decimal | None = ZERO  # cents, usage + capacity; None when some of the usage has no price
    capacity_revenue: Decimal = ZERO  # cents: the reservations' and rentals' part of `revenue`
    covered_tokens: int = 0  # the part of `tokens` a rental covers: metered, not priced again
    hardware_cost: Decimal = ZERO
    power_cost: Decimal = ZERO
    energy_kwh: Decimal = ZERO
    emissions_kg_co2e: Decimal = ZERO
    reserved_idle_cost: Decimal = ZERO  # exact: hardware + power of the renters' idle hours
    reserved_idle_energy_kwh: Decimal = ZERO
    reserved_idle_emissions_kg_co2e: Decimal = ZERO
    fleet_hardware_cost: Decimal | None = None
    fleet_power_cost: Decimal | None = None
    fleet_energy_kwh: Decimal | None = None
    fleet_emissions_kg_co2e: Decimal | None = None
    cluster_hours: int | None = None

    @property
    def tokens(self) -> int:
        return (self.input_tokens + self.cached_input_tokens + self.cache_write_tokens + self.cache_write_long_tokens
                + self.audio_input_tokens + self.output_tokens + self.audio_output_tokens)

    @property
    def cost(self) -> Decimal:
        return self.hardware_cost + self.power_cost

    @property
    def usage_revenue(self) -> Decimal | None:
        """What the tokens earn (cents); None when some of the usage has no price."""
        return None if self.revenue is None else self.revenue - self.capacity_revenue

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
    def g_co2e_per_million_tokens(self) -> Decimal | None:
        return _half_up(self.emissions_kg_co2e * 1000 * MILLION / self.tokens, "0.001") if self.tokens else None

    @property
    def idle_cost(self) -> Decimal | None:
        """Exact: the fleet's cost that neither usage nor a renter carries."""
        if self.fleet_hardware_cost is None:
            return None
        return self.fleet_hardware_cost + self.fleet_power_cost - self.cost - self.reserved_idle_cost

    @property
    def idle_energy_kwh(self) -> Decimal | None:
        if self.fleet_energy_kwh is None:
            return None
        return self.fleet_energy_kwh - self.energy_kwh - self.reserved_idle_energy_kwh

    @property
    def idle_emissions_kg_co2e(self) -> Decimal | None:
        if self.fleet_emissions_kg_co2e is None:
            return None
        return self.fleet_emissions_kg_co2e - self.emissions_kg_co2e - self.reserved_idle_emissions_kg_co2e

    @property
    def idle_cost_shown(self) -> Decimal | None:
        return None if self.fleet_hardware_cost is None else round_cents(self.idle_cost)

    @property
    def reserved_idle_cost_shown(self) -> Decimal:
        return round_cents(self.reserved_idle_cost)

    @property
    def total_cost_shown(self) -> Decimal | None:
        idle = self.idle_cost_shown
        if idle is None:
            return None
        return self.hardware_cost_shown + self.power_cost_shown + idle + self.reserved_idle_cost_shown

    def __add__(self, other: "Figures") -> "Figures":
        def both(a, b):
            if a is None or b is None:
                return b if a is None else a
            return a + b

        return Figures(
            **{name: getattr(self, name) + getattr(other, name) for name in TOKEN_FIGURES},
            revenue=None if self.revenue is None or other.revenue is None else self.revenue + other.revenue,
            capacity_revenue=self.capacity_revenue + other.capacity_revenue,
            covered_tokens=self.covered_tokens + other.covered_tokens,
            hardware_cost=self.hardware_cost + other.hardware_cost, power_cost=self.power_cost + other.power_cost,
            energy_kwh=self.energy_kwh + other.energy_kwh,
            emissions_kg_co2e=self.emissions_kg_co2e + other.emissions_kg_co2e,
            reserved_idle_cost=self.reserved_idle_cost + other.reserved_idle_cost,
            reserved_idle_energy_kwh=self.reserved_idle_energy_kwh + other.reserved_idle_energy_kwh,
            reserved_idle_emissions_kg_co2e=self.reserved_idle_emissions_kg_co2e
            + other.reserved_idle_emissions_kg_co2e,
            fleet_hardware_cost=both(self.fleet_hardware_cost, other.fleet_hardware_cost),
            fleet_power_cost=both(self.fleet_power_cost, other.fleet_power_cost),
            fleet_energy_kwh=both(self.fleet_energy_kwh, other.fleet_energy_kwh),
            fleet_emissions_kg_co2e=both(self.fleet_emissions_kg_co2e, other.fleet_emissions_kg_co2e),
            cluster_hours=both(self.cluster_hours, other.cluster_hours),
        )


# Figures' token counts: the allocation's token columns. Each is named after its priced
# class, but reasoning, which has none (it is priced as the output it is part of).
TOKEN_FIGURES = TOKEN_COLUMNS
PRICED_CLASS = {f"{token_class}_tokens": token_class for token_class in TOKEN_CLASSES}
NO_TOKENS = (0,) * len(TOKEN_FIGURES)


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
    unplaced_tokens: int  # refused on clusters rented to another customer included
    hours_not_allocated: int  # hours of the range the allocation has not covered yet
    unpriced_tokens: int = 0  # served on leased cluster-hours with no lease in force
    unpriced_cluster_hours: int = 0
    refused_tokens: int = 0  # the part of unplaced_tokens served on a cluster rented to another customer
    capacity_revenue_outside_rows: Decimal = ZERO  # in the totals, on no row (see the module docstring)


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


def _calendar_cuts(start: datetime, end: datetime, *, daily: bool) -> set[datetime]:
    """`start` and every month start (and, when `daily`, every day start) in (start, end)."""
    instants, month = {start}, month_bounds(start)[1]
    while month < end:
        instants.add(month)
        month = month_bounds(month)[1]
    if daily:
        day = start.replace(hour=0) + DAY
        while day < end:
            instants.add(day)
            day += DAY
    return instants


def _boundaries(pricing: Pricing, start: datetime, end: datetime, *, daily: bool) -> list[datetime]:
    """`start` and every instant in (start, end) where a month, a tier, a price (or, when
    grouping by day, a day) begins: the hours between two are priced alike."""
    return sorted(_calendar_cuts(start, end, daily=daily) | set(pricing.schedule.boundaries(start, end)))


ALLOCATION_SQL = f"""
    SELECT width_bucket(hour, %(bounds)s::timestamptz[]), cluster_id, customer_id, model, service_tier,
           {", ".join(f"sum({name})::bigint" for name in TOKEN_FIGURES)}, sum(hardware_cost), sum(power_cost),
           sum(energy_kwh), sum(emissions_kg_co2e), reserved_idle
    FROM {CostAllocation._meta.db_table} WHERE hour >= %(start)s AND hour < %(end)s
    GROUP BY 1, 2, 3, 4, 5, reserved_idle
"""
CLUSTER_HOUR_SQL = f"""
    SELECT width_bucket(hour, %(bounds)s::timestamptz[]), cluster_id, sum(hardware_cost), sum(power_cost),
           sum(energy_kwh), sum(emissions_kg_co2e), count(*)
    FROM {ClusterHourCost._meta.db_table} WHERE hour >= %(start)s AND hour < %(end)s
    GROUP BY 1, 2
"""


# The rollups' sums as the allocation stores them: the priced classes, then reasoning.
_PRICED_SQL = {**priced_sql(), "reasoning": "reasoning_tokens"}
assert tuple(f"{name}_tokens" for name in _PRICED_SQL) == TOKEN_FIGURES
# The usage each renter reported from its rented cluster in the rented hours (billing's rule:
# the rollup's cluster tag), in the hours that cluster has a cost row: exactly the hours the
# allocation gave that usage to the cluster (an hour out of service or unpriced has none).
# The token columns are the rollup's alone, so they need no alias.
COVERED_SQL = f"""
    SELECT width_bucket(r.hour, %(bounds)s::timestamptz[]), c.id, r.customer_id, r.model, r.service_tier,
           {", ".join(f"sum({expression})::bigint" for expression in _PRICED_SQL.values())}
    FROM {HourlyRollup._meta.db_table} r
    JOIN unnest(%(clusters)s::text[], %(customers)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[])
         AS rt(cluster, customer_id, starts_at, ends_at)
      ON r.cluster = rt.cluster AND r.customer_id = rt.customer_id AND r.hour >= rt.starts_at AND r.hour < rt.ends_at
    JOIN {Cluster._meta.db_table} c ON c.name = r.cluster
    JOIN {ClusterHourCost._meta.db_table} h ON h.cluster_id = c.id AND h.hour = r.hour
    WHERE r.hour >= %(start)s AND r.hour < %(end)s
    GROUP BY 1, 2, 3, 4, 5
"""


def _fetch(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _clusters() -> dict[int, Cluster]:
    return {c.pk: c for c in Cluster.objects.select_related("datacenter", "sku")}


def _fleet_keys(cluster: Cluster, segment: datetime) -> dict:
    return {"cluster": cluster.name, "datacenter": cluster.datacenter.name, "vendor": cluster.sku.vendor,
            "ownership": cluster.ownership, "day": segment.replace(hour=0, minute=0, second=0, microsecond=0)}


def _covered(params: dict) -> dict[tuple, list[int]]:
    """Token counts (TOKEN_FIGURES order) a rental covers, by (bucket, cluster id, customer,
    model, service tier) of ALLOCATION_SQL."""
    rentals = rentals_overlapping(start=params["start"], end=params["end"])
    if not rentals:
        return {}
    terms = {"clusters": [r.cluster for r in rentals], "customers": [r.customer_id for r in rentals],
             "starts": [r.starts_at for r in rentals], "ends": [r.ends_at or params["end"] for r in rentals]}
    return {tuple(row[:5]): list(row[5:]) for row in _fetch(COVERED_SQL, {**params, **terms})}


def _pieces(start: datetime, end: datetime, *, daily: bool) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at each month (and, when grouping by day, each day): what one
    capacity line covers, as an invoice has one per term and month."""
    ordered = sorted(_calendar_cuts(start, end, daily=daily) | {end})
    return list(zip(ordered, ordered[1:]))


def _term_keys(term: CapacityTerm, customer_id: str, by_name: dict[str, Cluster]) -> dict:
    """The group keys a capacity term has a value for (see the module docstring)."""
    keys = {"customer": customer_id}
    if term.kind == "reservation":
        keys["model_tier"] = term.name
    if term.cluster and term.cluster in by_name:
        cluster = by_name[term.cluster]
        keys.update(cluster=cluster.name, datacenter=cluster.datacenter.name, vendor=cluster.sku.vendor,
                    ownership=cluster.ownership)
    return keys


def _capacity(*, start: datetime, end: datetime, group_by: tuple[str, ...], clusters: dict[int, Cluster],
              sums: dict[tuple, "Figures"]) -> Decimal:
    """Add each reservation's and rental's revenue over [start, end) to the rows it belongs
    to; return what belongs to no row (it goes to the totals only)."""
    by_name = {c.name: c for c in clusters.values()}
    pieces = _pieces(start, end, daily="day" in group_by)
    outside = ZERO
    for customer_id, terms in capacity_terms(customer_ids=None, start=start, end=end).items():
        for term in terms:
            keys = _term_keys(term, customer_id, by_name)
            for piece_start, piece_end in pieces:
                amount = sum((line.amount for line in capacity_lines([term], start=piece_start, end=piece_end)),
                             ZERO)
                if not amount:
                    continue
                keys["day"] = piece_start.replace(hour=0)
                if set(group_by) <= keys.keys():
                    sums[tuple(keys[k] for k in group_by)] += Figures(capacity_revenue=amount)
                else:
                    outside += amount
    return outside


def _economics(*, start: datetime, end: datetime, group_by: tuple[str, ...], pricing: Pricing,
               clusters: dict[int, Cluster]) -> tuple[list[EconomicsRow], Figures]:
    """Rows of [start, end) by `group_by`, and the totals (fleet figures included)."""
    bounds = _boundaries(pricing, start, end, daily="day" in group_by)
    params = {"bounds": bounds, "start": start, "end": end}
    sums: dict[tuple, Figures] = defaultdict(Figures)
    quantities: dict[tuple, dict[tuple, list[Quantity]]] = defaultdict(lambda: defaultdict(list))
    with_reserved = set(group_by) <= RESERVED_KEYS
    reserved = Figures()
    covered = _covered(params)
    for bucket, cluster_id, customer_id, model, service_tier, *sums_of_row in _fetch(ALLOCATION_SQL, params):
        *counts, hw, pw, kwh, co2, reserved_idle = sums_of_row
        segment = bounds[bucket - 1]
        if reserved_idle:  # the renter's idle hours: its cost, but no model's, and no usage's
            part = Figures(reserved_idle_cost=hw + pw, reserved_idle_energy_kwh=kwh,
                           reserved_idle_emissions_kg_co2e=co2)
            reserved += part
            if with_reserved:
                keys = {**_fleet_keys(clusters[cluster_id], segment), "customer": customer_id}
                sums[tuple(keys[k] for k in group_by)] += part
            continue
        keys = {**_fleet_keys(clusters[cluster_id], segment), "model": model, "customer": customer_id,
                "model_tier": pricing.tier(model, segment)}
        key = tuple(keys[k] for k in group_by)
        tokens = dict(zip(TOKEN_FIGURES, counts))
        # What the rental covers is shown, not priced. At most what was allocated: a rollup
        # newer than the allocation (a stale hour) could say more.
        parts = covered.get((bucket, cluster_id, customer_id, model, service_tier), NO_TOKENS)
        priced = {name: max(count - part, 0) for name, count, part in zip(TOKEN_FIGURES, counts, parts)}
        covered_tokens = sum(tokens[name] - priced[name] for name in PRICED_CLASS)
        sums[key] += Figures(**tokens, hardware_cost=hw, power_cost=pw, energy_kwh=kwh, emissions_kg_co2e=co2,
                             covered_tokens=covered_tokens)
        # As billing rates them: a class with no tokens gives no quantity, and needs no price.
        quantities[key][(customer_id, month_bounds(segment)[0])].extend(
            Quantity(model, service_tier, token_class, segment, priced[name])
            for name, token_class in PRICED_CLASS.items() if priced[name])
    fleet = Figures(fleet_hardware_cost=ZERO, fleet_power_cost=ZERO, fleet_energy_kwh=ZERO,
                    fleet_emissions_kg_co2e=ZERO, cluster_hours=0)
    with_fleet = set(group_by) <= FLEET_KEYS
    for bucket, cluster_id, hw, pw, kwh, co2, hours in _fetch(CLUSTER_HOUR_SQL, params):
        part = Figures(fleet_hardware_cost=hw, fleet_power_cost=pw, fleet_energy_kwh=kwh, fleet_emissions_kg_co2e=co2,
                       cluster_hours=hours)
        fleet += part
        if with_fleet:
            keys = _fleet_keys(clusters[cluster_id], bounds[bucket - 1])
            sums[tuple(keys[k] for k in group_by)] += part
    outside = _capacity(start=start, end=end, group_by=group_by, clusters=clusters, sums=sums)
    rows = []
    for key in sorted(sums, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        revenue = _revenue(quantities.get(key, {}), pricing)
        figures = sums[key]
        revenue = None if revenue is None else revenue + figures.capacity_revenue
        rows.append(EconomicsRow(keys=dict(zip(group_by, key)), figures=replace(figures, revenue=revenue)))
    totals = sum((row.figures for row in rows), Figures())
    if not with_reserved:  # not in any row: the totals take it from the sum over all
        totals += reserved
    totals += Figures(revenue=outside, capacity_revenue=outside)
    totals = replace(totals, fleet_hardware_cost=fleet.fleet_hardware_cost, fleet_power_cost=fleet.fleet_power_cost,
                     fleet_energy_kwh=fleet.fleet_energy_kwh, fleet_emissions_kg_co2e=fleet.fleet_emissions_kg_co2e,
                     cluster_hours=fleet.cluster_hours)
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
    in_rows = sum((row.figures.capacity_revenue for row in rows), ZERO)
    in_range = {"hour__gte": start, "hour__lt": end}
    unplaced = UnplacedUsage.objects.filter(**in_range).aggregate(n=Sum("tokens"))["n"] or 0
    refused = UnplacedUsage.objects.filter(**in_range, reason=UnplacedUsage.Reason.RENTED_TO_OTHER_CUSTOMER).aggregate(
        n=Sum("tokens"))["n"] or 0
    unpriced = UnpricedClusterHour.objects.filter(**in_range).aggregate(n=Sum("tokens"), hours=Count("pk"))
    allocated = AllocatedHour.objects.filter(**in_range).count()
    return UnitEconomics(start=start, end=end, group_by=group_by, rows=rows, totals=totals, unplaced_tokens=unplaced,
                         hours_not_allocated=int((end - start) / HOUR) - allocated,
                         unpriced_tokens=unpriced["n"] or 0, unpriced_cluster_hours=unpriced["hours"],
                         refused_tokens=refused, capacity_revenue_outside_rows=totals.capacity_revenue - in_rows)


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
            if row.figures.fleet_hardware_cost is None:
                continue  # capacity revenue of a cluster that had no priced hour that day: no cost to export
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
