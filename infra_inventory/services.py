"""Allocation of cluster-hour costs to usage, as a projection rebuilt hour by hour.

`costs_allocate` replaces the allocation of whole hours: it reads the inventory, power
readings and hourly rollups, asks the pure core for each cluster-hour's cost and shares,
and writes them in one transaction, so running it again changes nothing.
"""

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from infra_inventory.allocation import (
    Deployment as Placement, TokenWeights, UsageTokens, allocate, cluster_hour_cost, place, usage_of_counts,
)
from infra_inventory.models import (
    TOKEN_COLUMNS, AllocatedHour, Cluster, ClusterHourCost, CostAllocation, Deployment, PowerContract, PowerReading,
    UnplacedUsage,
)
from metering.token_classes import priced_sql

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class AllocationSummary:
    hours: int
    cluster_hours: int
    allocations: int
    unplaced_tokens: int


class Fleet:
    """The inventory as the allocation of one range of hours needs it."""

    def __init__(self, start: datetime, end: datetime):
        self.clusters = {c.name: c for c in Cluster.objects.select_related("sku", "datacenter")}
        self.weights: dict[str, TokenWeights] = {name: c.sku.token_weights for name, c in self.clusters.items()}
        contracts = defaultdict(list)
        for contract in PowerContract.objects.order_by("effective_from"):
            contracts[contract.datacenter_id].append(contract)
        self.contracts = {dc: ([c.effective_from for c in items], items) for dc, items in contracts.items()}
        self.readings = {(r.cluster_id, r.hour): r.it_kwh
                         for r in PowerReading.objects.filter(hour__gte=start, hour__lt=end)}
        deployments = defaultdict(list)
        for d in Deployment.objects.select_related("cluster"):
            deployments[(d.model, d.region)].append(Placement(d.cluster.name, d.share))
        self.deployments = dict(deployments)

    def deployments_in_service(self, model: str, region: str, hour: datetime) -> list[Placement]:
        """Where usage of a model in a region without a cluster runs at that hour."""
        return [d for d in self.deployments.get((model, region), ()) if self.clusters[d.cluster].in_service(hour)]

    def price_per_kwh(self, cluster: Cluster, hour: datetime) -> Decimal:
        """The datacenter's contract in force; no contract means power is not priced (0)."""
        starts, contracts = self.contracts.get(cluster.datacenter_id, ([], []))
        index = bisect_right(starts, hour) - 1
        return contracts[index].price_per_kwh if index >= 0 else Decimal(0)

    def cost(self, cluster: Cluster, hour: datetime):
        return cluster_hour_cost(
            accelerators=cluster.accelerator_count, unit_cost=cluster.sku.unit_cost,
            amortization_months=cluster.sku.amortization_months, board_watts=cluster.sku.board_watts,
            measured_it_kwh=self.readings.get((cluster.pk, hour)), pue=cluster.datacenter.pue,
            price_per_kwh=self.price_per_kwh(cluster, hour),
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
            deployments = [] if cluster else fleet.deployments_in_service(model, region, hour)
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
                     "weighted_tokens")
ALLOCATION_COLUMNS = ("cluster_id", "hour", "customer_id", "model", "service_tier", *TOKEN_COLUMNS,
                      "weighted_tokens", "hardware_cost", "power_cost", "energy_kwh")


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
    hour_costs, allocations, hours = [], [], []
    hour = start
    while hour < end:
        hours.append(AllocatedHour(hour=hour, rollup_events=events.get(hour, 0), allocated_at=as_of))
        for cluster in fleet.clusters.values():
            if not cluster.in_service(hour):
                continue
            cost = fleet.cost(cluster, hour)
            weights = fleet.weights[cluster.name]
            usage = _merge(served.get((cluster.name, hour), []))
            shares = allocate(cost, usage, weights)
            hour_costs.append((cluster.pk, hour, cost.hardware, cost.power, cost.it_kwh, cost.energy_kwh,
                               cost.estimated, sum((s.weighted_tokens for s in shares), Decimal(0))))
            tokens = {u.key: u for u in usage}
            allocations.extend(
                (cluster.pk, hour, *s.key, *tokens[s.key].counts(), s.weighted_tokens, s.hardware, s.power,
                 s.energy_kwh)
                for s in shares)
        hour += HOUR
    for model in (CostAllocation, ClusterHourCost, UnplacedUsage, AllocatedHour):
        model.objects.filter(hour__gte=start, hour__lt=end).delete()
    AllocatedHour.objects.bulk_create(hours)
    _copy(ClusterHourCost, HOUR_COST_COLUMNS, hour_costs)
    _copy(CostAllocation, ALLOCATION_COLUMNS, allocations)
    UnplacedUsage.objects.bulk_create(unplaced, batch_size=5000)
    return AllocationSummary(hours=len(hours), cluster_hours=len(hour_costs), allocations=len(allocations),
                             unplaced_tokens=sum(u.tokens for u in unplaced))


STALE_HOURS_SQL = """
WITH usage AS (
    SELECT hour, sum(events) AS events FROM metering_hourly_rollup
    WHERE hour >= %(start)s AND hour < %(end)s GROUP BY hour
), readings AS (
    SELECT DISTINCT r.hour FROM infra_inventory_powerreading r
    JOIN infra_inventory_allocatedhour a ON a.hour = r.hour AND r.received_at > a.allocated_at
    WHERE r.hour >= %(start)s AND r.hour < %(end)s
), adjusted AS (  -- a replacement changes tokens, not the count of events
    SELECT DISTINCT a.hour FROM metering_usage_adjustment adj
    JOIN infra_inventory_allocatedhour a
      ON a.hour = date_trunc('hour', adj.occurred_at, 'UTC') AND adj.recorded_at > a.allocated_at
    WHERE adj.occurred_at >= %(start)s AND adj.occurred_at < %(end)s
), hours AS (
    SELECT generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS hour
)
SELECT h.hour FROM hours h
LEFT JOIN infra_inventory_allocatedhour a ON a.hour = h.hour
LEFT JOIN usage u ON u.hour = h.hour
WHERE a.hour IS NULL OR a.rollup_events <> coalesce(u.events, 0) OR h.hour IN (SELECT hour FROM readings)
   OR h.hour IN (SELECT hour FROM adjusted)
ORDER BY 1
"""


def hours_stale(*, start: datetime, end: datetime) -> list[datetime]:
    """Hours never allocated, or whose usage grew (late events), or with a reading or a usage
    adjustment recorded after they were allocated."""
    with connection.cursor() as cursor:
        cursor.execute(STALE_HOURS_SQL, {"start": start, "end": end})
        return [row[0] for row in cursor.fetchall()]


def costs_allocate_stale(*, start: datetime, end: datetime, as_of: datetime) -> list[datetime]:
    """Allocate exactly the stale hours of [start, end); returns them."""
    stale = hours_stale(start=start, end=end)
    for hour in stale:
        costs_allocate(start=hour, end=hour + HOUR, as_of=as_of)
    return stale


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
