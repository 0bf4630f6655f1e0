"""Allocation of cluster-hour costs to usage, as a projection rebuilt hour by hour.

`costs_allocate` replaces the allocation of whole hours: it reads the inventory, leases,
grid intensities, rentals (billing.selectors), power readings and hourly rollups, asks the
pure core for each cluster-hour's cost, emissions and shares, and writes them in one
transaction, so running it again changes nothing.

A leased cluster-hour without a lease in force is not priced: it is written as an
UnpricedClusterHour with the tokens it served, and no cost row, so it can never pass for a
free hour. A rented cluster-hour goes to its renter (allocation core `allocate_hour`);
others' usage there is written as UnplacedUsage with reason `rented_to_other_customer`.
A cluster-hour whose datacenter has no grid intensity in force is flagged
`grid_intensity_missing` (its emissions are the embodied share only) and reported by
`hours_without_grid_intensity`.

`hours_stale` finds the hours whose inputs changed since they were allocated (late usage,
readings, adjustments, inventory, rentals); `costs_allocate_stale` re-does exactly those.
"""

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Sum

from billing.selectors import rentals_overlapping
from infra_inventory.allocation import (
    Carbon, Deployment as Placement, LeaseTerms, TokenWeights, UsageTokens, allocate_hour, cluster_hour_cost, place,
    usage_of_counts,
)
from infra_inventory.models import (
    TOKEN_COLUMNS, AllocatedHour, Cluster, ClusterHourCost, CostAllocation, Deployment, GridIntensity, Lease,
    PowerContract, PowerReading, UnplacedUsage, UnpricedClusterHour,
)
from metering.token_classes import priced_sql

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class AllocationSummary:
    hours: int
    cluster_hours: int
    allocations: int
    unplaced_tokens: int  # refused on rented clusters included
    unpriced_cluster_hours: int = 0
    unpriced_tokens: int = 0


def _effective(rows, key) -> dict:
    """Effective-dated rows by `key`: (starts, rows), each sorted by effective_from."""
    grouped = defaultdict(list)
    for row in rows:
        grouped[key(row)].append(row)
    return {k: ([r.effective_from for r in items], items) for k, items in grouped.items()}


def _in_force(dated: dict, key, hour: datetime):
    """The row in force at `hour`: the latest effective_from ≤ hour, or None."""
    starts, rows = dated.get(key, ([], []))
    index = bisect_right(starts, hour) - 1
    return rows[index] if index >= 0 else None


class Fleet:
    """The inventory as the allocation of one range of hours needs it."""

    def __init__(self, start: datetime, end: datetime):
        self.clusters = {c.name: c for c in Cluster.objects.select_related("sku", "datacenter")}
        self.weights: dict[str, TokenWeights] = {name: c.sku.token_weights for name, c in self.clusters.items()}
        self.contracts = _effective(PowerContract.objects.order_by("effective_from"), lambda c: c.datacenter_id)
        self.leases = _effective(Lease.objects.order_by("effective_from"), lambda lease: lease.cluster_id)
        self.intensities = _effective(GridIntensity.objects.order_by("effective_from"), lambda g: g.datacenter_id)
        rentals = defaultdict(list)
        for rental in rentals_overlapping(start=start, end=end):
            rentals[rental.cluster].append(rental)
        self.rentals = dict(rentals)
        self.readings = {(r.cluster_id, r.hour): r.it_kwh
                         for r in PowerReading.objects.filter(hour__gte=start, hour__lt=end)}
        deployments = defaultdict(list)
        for d in Deployment.objects.select_related("cluster"):
            deployments[(d.model, d.region)].append(Placement(d.cluster.name, d.share))
        self.deployments = dict(deployments)

    def deployments_in_service(self, model: str, region: str, hour: datetime, customer_id: str) -> list[Placement]:
        """Where a customer's usage of a model in a region without a cluster runs at that hour:
        the deployments on clusters in service, but those rented to another customer."""
        deployments = [d for d in self.deployments.get((model, region), ())
                       if self.clusters[d.cluster].in_service(hour)]
        if self.rentals:
            deployments = [d for d in deployments
                           if self.renter(self.clusters[d.cluster], hour) in (None, customer_id)]
        return deployments

    def price_per_kwh(self, cluster: Cluster, hour: datetime) -> Decimal:
        """The datacenter's contract in force; no contract means power is not priced (0)."""
        contract = _in_force(self.contracts, cluster.datacenter_id, hour)
        return contract.price_per_kwh if contract is not None else Decimal(0)

    def renter(self, cluster: Cluster, hour: datetime) -> str | None:
        """The customer renting the cluster at that hour (rentals of a cluster never overlap)."""
        for rental in self.rentals.get(cluster.name, ()):
            if rental.covers(hour):
                return rental.customer_id
        return None

    def grid_intensity(self, cluster: Cluster, hour: datetime) -> Decimal | None:
        """gCO2e per kWh of the datacenter's grid in force at that hour; None when none is."""
        intensity = _in_force(self.intensities, cluster.datacenter_id, hour)
        return intensity.g_co2e_per_kwh if intensity is not None else None

    def cost(self, cluster: Cluster, hour: datetime):
        """The cluster-hour's cost and emissions; None for a leased cluster with no lease in
        force (unpriced, never 0)."""
        lease = None
        if cluster.ownership == Cluster.Ownership.LEASED:
            in_force = _in_force(self.leases, cluster.pk, hour)
            if in_force is None:
                return None
            lease = LeaseTerms(in_force.price_per_accelerator_hour, in_force.includes_power)
        intensity = self.grid_intensity(cluster, hour)
        # Without an intensity only the embodied share is counted, and the hour is flagged
        # (ClusterHourCost.grid_intensity_missing): the grid's part is unknown, not 0.
        carbon = Carbon(intensity if intensity is not None else Decimal(0), cluster.sku.embodied_kg_co2e)
        return cluster_hour_cost(
            accelerators=cluster.accelerator_count, unit_cost=cluster.sku.unit_cost,
            amortization_months=cluster.sku.amortization_months, board_watts=cluster.sku.board_watts,
            measured_it_kwh=self.readings.get((cluster.pk, hour)), pue=cluster.datacenter.pue,
            price_per_kwh=self.price_per_kwh(cluster, hour), lease=lease, carbon=carbon,
        )


# The rollups' sums as the priced classes (metering.token_classes.priced_sql) and
# reasoning, in UsageTokens.counts order. Postgres computes them: a month is a million
# rows, and priced() per row in Python would add seconds to the run.
PRICED_SQL = {**priced_sql(), "reasoning": "reasoning_tokens"}
USAGE_SQL = f"""
    SELECT cluster, region, hour, customer_id, model, service_tier, sum(events)::bigint,
           {", ".join(f"sum({expression})::bigint" for expression in PRICED_SQL.values())}
    FROM metering_hourly_rollup WHERE hour >= %s AND hour < %s
    GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 3, 4, 5, 6, 1, 2
"""


def _usage_by_cluster_hour(fleet: Fleet, start: datetime, end: datetime):
    """Rollups of [start, end) as UsageTokens per (cluster, hour); usage without a known
    in-service cluster is placed by the deployment map, else returned as unplaced."""
    served: dict[tuple[str, datetime], list[UsageTokens]] = defaultdict(list)
    unplaced, events = [], defaultdict(int)
    with connection.cursor() as cursor:
        cursor.execute(USAGE_SQL, [start, end])
        for cluster, region, hour, customer_id, model, service_tier, n, *counts in cursor.fetchall():
            events[hour] += n
            usage = usage_of_counts((customer_id, model, service_tier), counts)
            known = fleet.clusters.get(cluster)
            deployments = [] if cluster else fleet.deployments_in_service(model, region, hour, customer_id)
            if known is not None and known.in_service(hour):
                served[(cluster, hour)].append(usage)
            elif deployments:
                for placed_on, part in place(usage, deployments):
                    served[(placed_on, hour)].append(part)
            else:
                unplaced.append(UnplacedUsage(hour=hour, customer_id=customer_id, model=model, region=region,
                                              tokens=usage.tokens))
    return served, unplaced, events


def _merge(usage: list[UsageTokens]) -> list[UsageTokens]:
    """One entry per key (placement can give a key several parts on one cluster-hour)."""
    if len(usage) < 2:
        return usage
    sums: dict[tuple, list[int]] = {}
    for u in usage:
        total = sums.get(u.key)
        if total is None:
            sums[u.key] = list(u.counts())
        else:
            for position, count in enumerate(u.counts()):
                total[position] += count
    return [usage_of_counts(key, counts) for key, counts in sums.items()]


HOUR_COST_COLUMNS = ("cluster_id", "hour", "hardware_cost", "power_cost", "it_kwh", "energy_kwh", "power_estimated",
                     "weighted_tokens", "emissions_kg_co2e", "rented_to", "grid_intensity_missing")
ALLOCATION_COLUMNS = ("cluster_id", "hour", "customer_id", "model", "service_tier", *TOKEN_COLUMNS,
                      "weighted_tokens", "hardware_cost", "power_cost", "energy_kwh", "emissions_kg_co2e",
                      "reserved_idle")
NO_TOKENS = (0,) * len(TOKEN_COLUMNS)


def _copy(model, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """COPY plain rows into a model's table: a month of allocation is over a million rows,
    which the ORM would spend most of the run building."""
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


@transaction.atomic
def costs_allocate(*, start: datetime, end: datetime, as_of: datetime) -> AllocationSummary:
    """(Re)allocate every hour in [start, end), both on the hour."""
    fleet = Fleet(start, end)
    served, unplaced, events = _usage_by_cluster_hour(fleet, start, end)
    hour_costs, allocations, hours, unpriced = [], [], [], []
    hour = start
    while hour < end:
        hours.append(AllocatedHour(hour=hour, rollup_events=events.get(hour, 0), allocated_at=as_of))
        for cluster in fleet.clusters.values():
            if not cluster.in_service(hour):
                continue
            usage = _merge(served.get((cluster.name, hour), []))
            cost = fleet.cost(cluster, hour)
            if cost is None:
                unpriced.append(UnpricedClusterHour(cluster=cluster, hour=hour, tokens=sum(u.tokens for u in usage)))
                continue
            renter = fleet.renter(cluster, hour)
            result = allocate_hour(cost, usage, fleet.weights[cluster.name], rented_to=renter)
            hour_costs.append((cluster.pk, hour, cost.hardware, cost.power, cost.it_kwh, cost.energy_kwh,
                               cost.estimated, sum((s.weighted_tokens for s in result.shares), Decimal(0)),
                               cost.emissions_kg_co2e, renter or "", fleet.grid_intensity(cluster, hour) is None))
            tokens = {u.key: u for u in usage}
            allocations.extend(
                (cluster.pk, hour, *s.key, *tokens[s.key].counts(), s.weighted_tokens, s.hardware, s.power,
                 s.energy_kwh, s.emissions_kg_co2e, False)
                for s in result.shares)
            if result.reserved_idle is not None:
                s = result.reserved_idle
                allocations.append((cluster.pk, hour, *s.key, *NO_TOKENS, s.weighted_tokens, s.hardware, s.power,
                                    s.energy_kwh, s.emissions_kg_co2e, True))
            unplaced.extend(
                UnplacedUsage(hour=hour, customer_id=u.key[0], model=u.key[1], region="", tokens=u.tokens,
                              cluster=cluster.name, reason=UnplacedUsage.Reason.RENTED_TO_OTHER_CUSTOMER)
                for u in result.refused)
        hour += HOUR
    for model in (CostAllocation, ClusterHourCost, UnplacedUsage, UnpricedClusterHour, AllocatedHour):
        model.objects.filter(hour__gte=start, hour__lt=end).delete()
    AllocatedHour.objects.bulk_create(hours)
    _copy(ClusterHourCost, HOUR_COST_COLUMNS, hour_costs)
    _copy(CostAllocation, ALLOCATION_COLUMNS, allocations)
    UnplacedUsage.objects.bulk_create(unplaced, batch_size=5000)
    UnpricedClusterHour.objects.bulk_create(unpriced, batch_size=5000)
    return AllocationSummary(hours=len(hours), cluster_hours=len(hour_costs), allocations=len(allocations),
                             unplaced_tokens=sum(u.tokens for u in unplaced), unpriced_cluster_hours=len(unpriced),
                             unpriced_tokens=sum(u.tokens for u in unpriced))


STALE_HOURS_SQL = """
WITH usage AS (
    SELECT hour, sum(events) AS events FROM metering_hourly_rollup
    WHERE hour >= %(start)s AND hour < %(end)s GROUP BY hour
), allocated AS (
    SELECT hour, rollup_events, allocated_at FROM infra_inventory_allocatedhour
    WHERE hour >= %(start)s AND hour < %(end)s
), readings AS (
    SELECT r.hour FROM infra_inventory_powerreading r
    JOIN allocated a ON a.hour = r.hour AND r.received_at > a.allocated_at
    WHERE r.hour >= %(start)s AND r.hour < %(end)s
), adjusted AS (  -- a replacement changes tokens, not the count of events
    SELECT a.hour FROM metering_usage_adjustment adj
    JOIN allocated a ON a.hour = date_trunc('hour', adj.occurred_at, 'UTC') AND adj.recorded_at > a.allocated_at
    WHERE adj.occurred_at >= %(start)s AND adj.occurred_at < %(end)s
), leased AS (  -- an unpriced leased hour a lease now covers
    SELECT u.hour FROM infra_inventory_unpricedclusterhour u
    JOIN infra_inventory_lease l ON l.cluster_id = u.cluster_id AND l.effective_from <= u.hour
    WHERE u.hour >= %(start)s AND u.hour < %(end)s
), terms AS MATERIALIZED (  -- the effective-dated prices written after some hour was allocated (usually
                            -- none), each in force until the next of its cluster or datacenter
    SELECT * FROM (
        SELECT cluster_id, NULL::bigint AS datacenter_id, effective_from, updated_at,
               lead(effective_from) OVER (PARTITION BY cluster_id ORDER BY effective_from) AS until
        FROM infra_inventory_lease
        UNION ALL
        SELECT NULL, datacenter_id, effective_from, updated_at,
               lead(effective_from) OVER (PARTITION BY datacenter_id ORDER BY effective_from)
        FROM infra_inventory_powercontract
        UNION ALL
        SELECT NULL, datacenter_id, effective_from, updated_at,
               lead(effective_from) OVER (PARTITION BY datacenter_id ORDER BY effective_from)
        FROM infra_inventory_gridintensity
    ) dated WHERE updated_at > (SELECT min(allocated_at) FROM allocated)
), repriced AS (  -- ... and in force at an hour allocated before, for a cluster then in service
                  -- (a lease: its cluster, if leased; a contract or intensity: its datacenter's)
    SELECT a.hour FROM (
        SELECT t.*, c.in_service_from, c.in_service_to FROM terms t
        JOIN infra_inventory_cluster c ON c.id = t.cluster_id AND c.ownership = 'leased'
        UNION ALL
        SELECT t.*, c.in_service_from, c.in_service_to FROM terms t
        JOIN infra_inventory_cluster c ON c.datacenter_id = t.datacenter_id
    ) t
    JOIN allocated a ON a.allocated_at < t.updated_at AND a.hour >= t.effective_from
                    AND (t.until IS NULL OR a.hour < t.until)
    WHERE t.in_service_from <= a.hour AND (t.in_service_to IS NULL OR a.hour < t.in_service_to)
), clusters AS MATERIALIZED (  -- the clusters whose row, SKU, datacenter or a deployment on them
                                -- was written after some hour was allocated (usually none)
    SELECT * FROM (
        SELECT c.id, c.in_service_from, c.in_service_to,
               greatest(c.updated_at, s.updated_at, d.updated_at, p.updated_at) AS changed_at
        FROM infra_inventory_cluster c
        JOIN infra_inventory_hardwaresku s ON s.id = c.sku_id
        JOIN infra_inventory_datacenter d ON d.id = c.datacenter_id
        LEFT JOIN (SELECT cluster_id, max(updated_at) AS updated_at FROM infra_inventory_deployment GROUP BY 1) p
          ON p.cluster_id = c.id
    ) written WHERE changed_at > (SELECT min(allocated_at) FROM allocated)
), reshaped AS (  -- ... after the hour was allocated: the hours it is in service now, or was when allocated
    SELECT a.hour FROM clusters c JOIN allocated a ON a.allocated_at < c.changed_at
    WHERE c.in_service_from <= a.hour AND (c.in_service_to IS NULL OR a.hour < c.in_service_to)
    UNION ALL
    SELECT a.hour FROM clusters c
    JOIN infra_inventory_clusterhourcost k ON k.cluster_id = c.id AND k.hour >= %(start)s AND k.hour < %(end)s
    JOIN allocated a ON a.hour = k.hour AND a.allocated_at < c.changed_at
    UNION ALL
    SELECT a.hour FROM clusters c
    JOIN infra_inventory_unpricedclusterhour u ON u.cluster_id = c.id AND u.hour >= %(start)s AND u.hour < %(end)s
    JOIN allocated a ON a.hour = u.hour AND a.allocated_at < c.changed_at
), rentals AS (
    SELECT r.cluster_id, r.starts_at, r.ends_at, m.customer_id FROM billing_rental r
    JOIN metering_customer m ON m.id = r.customer_id
    WHERE r.starts_at < %(end)s AND (r.ends_at IS NULL OR r.ends_at > %(start)s)
), rented AS (  -- rented now, allocated as not rented, or rented to someone else
    SELECT k.hour FROM rentals r
    JOIN infra_inventory_clusterhourcost k
      ON k.cluster_id = r.cluster_id AND k.hour >= greatest(r.starts_at, %(start)s)
     AND k.hour < least(coalesce(r.ends_at, 'infinity'), %(end)s)
    WHERE k.rented_to <> r.customer_id
), unrented AS (  -- allocated as rented, and no rental covers it any more (ended early)
    SELECT k.hour FROM infra_inventory_clusterhourcost k
    WHERE k.hour >= %(start)s AND k.hour < %(end)s AND k.rented_to <> ''
      AND NOT EXISTS (SELECT 1 FROM rentals r WHERE r.cluster_id = k.cluster_id AND r.customer_id = k.rented_to
                      AND r.starts_at <= k.hour AND (r.ends_at IS NULL OR k.hour < r.ends_at))
), changed AS (
    SELECT hour FROM readings UNION SELECT hour FROM adjusted UNION SELECT hour FROM leased
    UNION SELECT hour FROM repriced UNION SELECT hour FROM reshaped
    UNION SELECT hour FROM rented UNION SELECT hour FROM unrented
), hours AS (
    SELECT generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS hour
)
SELECT h.hour FROM hours h
LEFT JOIN allocated a ON a.hour = h.hour
LEFT JOIN usage u ON u.hour = h.hour
WHERE a.hour IS NULL OR a.rollup_events <> coalesce(u.events, 0) OR h.hour IN (SELECT hour FROM changed)
ORDER BY 1
"""


def hours_stale(*, start: datetime, end: datetime) -> list[datetime]:
    """The hours of [start, end) to allocate (again), in one query:
    - never allocated, or whose usage grew (late events);
    - with a power reading or a usage adjustment recorded after they were allocated;
    - with a leased cluster-hour left unpriced that a lease now covers;
    - priced by a lease, power contract or grid intensity written (added or changed) after
      they were allocated: the hours it is in force for a cluster in service;
    - of a cluster whose row, SKU, datacenter or deployments were written after they were
      allocated: the hours it is in service now or was allocated in (so a change of
      ownership, size or service window is caught both ways);
    - whose renter changed: a rental now in force that the hour's cost row does not name,
      or a cost row naming a renter no rental covers any more (a rental ended early).
    Inventory rows are compared by `updated_at`, set by every save; a deleted version is
    not seen, which is why the admin touches its cluster or datacenter when it deletes one.

    costs_allocate_task looks back USAGE_LATENESS_DAYS + 1 days (36 by default): an
    inventory change over older hours is allocated again by
    `manage.py allocate_costs --from … --to …` over the hours it prices."""
    with connection.cursor() as cursor:
        cursor.execute(STALE_HOURS_SQL, {"start": start, "end": end})
        return [row[0] for row in cursor.fetchall()]


def costs_allocate_stale(*, start: datetime, end: datetime, as_of: datetime) -> list[datetime]:
    """Allocate exactly the stale hours of [start, end) (hours_stale); returns them."""
    stale = hours_stale(start=start, end=end)
    for hour in stale:
        costs_allocate(start=hour, end=hour + HOUR, as_of=as_of)
    return stale


@dataclass(frozen=True)
class GridIntensityGap:
    """Allocated cluster-hours of one datacenter with no grid intensity in force: their
    emissions are the embodied share only, and `energy_kwh` of facility energy has no known
    grid emissions."""

    datacenter: str
    cluster_hours: int
    energy_kwh: Decimal
    first_hour: datetime
    last_hour: datetime


def hours_without_grid_intensity(*, start: datetime, end: datetime) -> list[GridIntensityGap]:
    """Per datacenter, the allocated cluster-hours of [start, end) whose grid emissions are
    not known (no intensity in force), for unit economics to show beside the emissions.
    Adding the intensity makes those hours stale; once allocated again they leave this list."""
    rows = (ClusterHourCost.objects.filter(hour__gte=start, hour__lt=end, grid_intensity_missing=True)
            .values("cluster__datacenter__name")
            .annotate(cluster_hours=Count("id"), energy_kwh=Sum("energy_kwh"), first_hour=Min("hour"),
                      last_hour=Max("hour"))
            .order_by("cluster__datacenter__name"))
    return [GridIntensityGap(datacenter=r["cluster__datacenter__name"], cluster_hours=r["cluster_hours"],
                             energy_kwh=r["energy_kwh"], first_hour=r["first_hour"], last_hour=r["last_hour"])
            for r in rows]


DAY = timedelta(days=1)


def _allocate_day(span: tuple[datetime, datetime, datetime]) -> AllocationSummary:
    start, end, as_of = span
    return costs_allocate(start=start, end=end, as_of=as_of)


def costs_allocate_days(*, start: datetime, end: datetime, as_of: datetime, jobs: int = 1):
    """Allocate [start, end) a day at a time (each day its own transaction), in `jobs`
    processes: days are independent, so they may run side by side. Yields each day's
    summary as it completes."""
    spans = []
    day = start
    while day < end:
        spans.append((day, min(day + DAY, end), as_of))
        day += DAY
    if jobs <= 1:
        yield from map(_allocate_day, spans)
        return
    from multiprocessing import get_context

    from django.db import connections

    connections.close_all()  # each forked process opens its own connection
    with get_context("fork").Pool(jobs) as pool:
        yield from pool.imap_unordered(_allocate_day, spans)
