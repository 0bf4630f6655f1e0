"""Allocate one month of cluster-hour costs to 1,000,000 hourly rollups (target: < 30 s).

    python -m bench.allocation [--rollups 1000000] [--clusters 200] [--runs days,month] [--seed 5]
    python -m bench.allocation --profile /tmp/allocation   # cProfile → /tmp/allocation-<run>.prof (slower)
    python -m bench.allocation --leased 0.33 --rentals 10  # a mixed fleet: leases, rentals, carbon

Builds, in a database of its own (`tokenledger_bench_costs`, or BENCH_COSTS_DATABASE_URL),
a fleet of `--clusters` clusters (four SKUs; three datacenters with their PUE and power
contracts, one contract changing mid-month; a random 40% of the clusters (93 of 200 with
the default seed) with hourly power readings, a few hours missing, the rest estimated
from board power; a few clusters entering or leaving service mid-month), deployments of the three models in each region
(one on a cluster retired mid-month), and `--rollups` hourly rollups over the 720 hours
of November 2026 written with COPY: 85% name their cluster, 14.5% have no cluster and
are placed by the deployments, 0.5% are in a region with no deployment (unplaced); every
token class of DESIGN.md §1 occurs (a third of the rollups write to the prompt cache, one
in ten for an hour, one in twenty carry audio, half reason), and one SKU weighs the newer
classes apart from the defaults.

With `--leased F` a share F of the clusters (chosen with their own generator, so the rest
of the data is the same as without) is leased: from one of two clouds, at a price per
accelerator-hour, half of them with power included; one in eight of those leases starts
only on the 3rd (the hours before are unpriced, reported), one in four changes price
mid-month. With `--rentals N`, N clusters are rented to a customer that uses them, each for
3–10 days: its hours are that customer's (its idle ones reserved idle) and the other
customers' usage there is refused (unplaced, `rented_to_other_customer`). Either option also
gives each datacenter a grid intensity and each SKU an embodied footprint (emissions).

Then it times `infra_inventory.services.costs_allocate` over the month, in day-sized
calls as `manage.py allocate_costs` makes them (`days`, into empty allocation tables)
and as one call (`month`, which then first deletes what `days` wrote: a re-allocation),
and after each run checks, in exact numeric arithmetic, that for every cluster-hour the
shares sum to its cost, that Σ allocated + idle == Σ cluster-hour cost, and that every
rollup token is either allocated or reported unplaced. Baselines in the same run: the
plain SQL GROUP BY of the month's rollups per cluster-hour, the service's own usage
query (GROUP BY of the six key columns, fetched into Python), and a COPY (psycopg
`write_row`) of as many rows as the allocation wrote into an unindexed table.
Prints JSON.
"""

import argparse
import cProfile
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import database_create, figures_print, peak_rss_mb, target  # noqa: E402

DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/tokenledger_bench_costs"
TARGET_S = 30
START = datetime(2026, 11, 1, tzinfo=UTC)
HOURS = 24 * 30
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MODELS = ("gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano")
TIERS = (("standard", 0.8), ("batch", 0.15), ("priority", 0.05))
# name, vendor, accelerator, unit cost, amortization months, board watts, weights (input, cached, output;
# the other classes at their defaults but on the MI300X)
SKUS = (
    ("h100-sxm", "nvidia", "H100 SXM", "30000.00", 48, 700, {"input": "1", "cached_input": "0.1", "output": "4"}),
    ("h200-sxm", "nvidia", "H200 SXM", "38000.00", 48, 700, {"input": "1", "cached_input": "0.1", "output": "3.5"}),
    ("b200", "nvidia", "B200", "45000.00", 60, 1000, {"input": "1", "cached_input": "0.08", "output": "3"}),
    ("mi300x", "amd", "MI300X", "20000.00", 48, 750, {"input": "1.1", "cached_input": "0.12", "output": "4.2",
                                                        "cache_write": "1.3", "audio_output": "9"}),
)
# name, region, PUE, price per kWh from a year before, price from mid-month (None: no change)
DATACENTERS = (
    ("iad-1", "us-east", "1.18", "0.0830", "0.0910"),
    ("iad-2", "us-east", "1.35", "0.0790", None),
    ("ams-1", "eu-west", "1.22", "0.1640", None),
)
UNDEPLOYED_REGION = "sa-east"  # usage here has no cluster and no deployment: unplaced
INFRA_TABLES = (
    "infra_inventory_costallocation", "infra_inventory_clusterhourcost", "infra_inventory_unplacedusage",
    "infra_inventory_allocatedhour", "infra_inventory_powerreading", "infra_inventory_deployment",
    "infra_inventory_cluster", "infra_inventory_powercontract", "infra_inventory_datacenter",
    "infra_inventory_hardwaresku", "infra_inventory_lease", "infra_inventory_gridintensity",
    "infra_inventory_unpricedclusterhour", "billing_rental",
)
CLOUDS = (("CoreWeave", (1.9, 2.6)), ("AWS", (2.4, 3.3)))  # provider, USD per accelerator-hour range
INTENSITIES = {"iad-1": "380", "iad-2": "410", "ams-1": "330"}  # gCO2e per kWh
EMBODIED_KG = {"h100-sxm": "1300", "h200-sxm": "1400", "b200": "1700", "mi300x": "1500"}
COPY_BASELINE_TABLE = "bench_costallocation_copy"


def fleet_seed(*, clusters: int, rng: random.Random) -> list[dict]:
    """SKUs, datacenters, contracts, clusters, deployments and power readings; returns the
    clusters as dicts (name, region, service window) for the rollup generator."""
    from django.db import connection

    from infra_inventory.models import Cluster, Datacenter, Deployment, HardwareSku, PowerContract

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(INFRA_TABLES)} CASCADE")
    skus = HardwareSku.objects.bulk_create(
        HardwareSku(name=name, vendor=vendor, accelerator=accelerator, unit_cost=Decimal(cost),
                    amortization_months=months, board_watts=watts,
                    **{f"weight_{c}": Decimal(w) for c, w in weights.items()})
        for name, vendor, accelerator, cost, months, watts, weights in SKUS)
    datacenters = Datacenter.objects.bulk_create(
        Datacenter(name=name, region=region, pue=Decimal(pue)) for name, region, pue, _, _ in DATACENTERS)
    contracts = []
    for dc, (_, _, _, price, change) in zip(datacenters, DATACENTERS):
        contracts.append(PowerContract(datacenter=dc, effective_from=START - timedelta(days=365),
                                       price_per_kwh=Decimal(price)))
        if change:
            contracts.append(PowerContract(datacenter=dc, effective_from=START + timedelta(days=14, hours=6),
                                           price_per_kwh=Decimal(change)))
    PowerContract.objects.bulk_create(contracts)
    rows = []
    for n in range(clusters):
        service_from, service_to = START - timedelta(days=rng.randint(30, 400)), None
        if n % 40 == 7:  # enters service mid-month
            service_from = START + timedelta(days=rng.randint(3, 25), hours=rng.randint(0, 23))
        elif n % 40 == 19:  # retired mid-month
            service_to = START + timedelta(days=rng.randint(3, 25), hours=rng.randint(0, 23))
        rows.append(Cluster(name=f"cl-{n:03d}", datacenter=datacenters[n % len(datacenters)],
                            sku=skus[rng.choices(range(len(skus)), (0.4, 0.25, 0.15, 0.2))[0]],
                            accelerator_count=rng.choice((8, 16, 32, 64, 128, 256, 512)),
                            in_service_from=service_from, in_service_to=service_to))
    fleet = Cluster.objects.bulk_create(rows)
    # Deployments: each model in each region on 2–4 clusters in service at the start of the
    # month, one of them (where there is one) retired during it: from then on its share
    # goes to the others.
    at_start = [c for c in fleet if c.in_service_from <= START]
    deployments = []
    for region in sorted({r for _, r, *_ in DATACENTERS}):
        local = [c for c in at_start if c.datacenter.region == region and c.in_service_to is None]
        retiring = [c for c in at_start if c.datacenter.region == region and c.in_service_to is not None]
        for model in MODELS:
            chosen = rng.sample(local, rng.randint(2, 4)) + rng.sample(retiring, min(1, len(retiring)))
            raw = [rng.randint(1, 10) for _ in chosen]
            shares = [Decimal(r * 10_000 // sum(raw)) / 10_000 for r in raw]
            shares[0] += 1 - sum(shares)
            deployments.extend(Deployment(model=model, region=region, cluster=c, share=s)
                               for c, s in zip(chosen, shares))
    Deployment.objects.bulk_create(deployments)
    readings = readings_seed(fleet, rng)
    return [{"name": c.name, "region": c.datacenter.region, "from": c.in_service_from, "to": c.in_service_to,
             "readings": readings.get(c.pk, 0)} for c in fleet]


def readings_seed(fleet, rng: random.Random) -> dict[int, int]:
    """Hourly readings for 40% of the clusters, ~3% of their hours missing; COPY."""
    from django.db import connection

    counts = {}
    sql = "COPY infra_inventory_powerreading (cluster_id, hour, it_kwh, received_at) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for cluster in fleet:
            if rng.random() >= 0.4:
                continue
            nominal = cluster.accelerator_count * cluster.sku.board_watts / 1000
            counts[cluster.pk] = 0
            for h in range(HOURS):
                hour = START + h * HOUR
                if rng.random() < 0.03 or not cluster.in_service(hour):
                    continue
                kwh = Decimal(round(nominal * rng.uniform(0.45, 0.98), 4)).quantize(Decimal("0.0001"))
                copy.write_row((cluster.pk, hour, kwh, hour + timedelta(minutes=rng.randint(65, 180))))
                counts[cluster.pk] += 1
    return counts


def mixed_seed(*, leased: float, rentals: int, seed: int) -> dict:
    """Leases on a share of the clusters, rentals of `rentals` clusters to customers that use
    them, grid intensities and embodied footprints (its own generator: the rest of the data
    stays that of a plain run with the same seed)."""
    from billing.services.capacity import rental_create
    from infra_inventory.models import Cluster, Datacenter, GridIntensity, HardwareSku, Lease
    from metering.models import Customer

    rng = random.Random(f"{seed}-mixed")
    for name, kg in EMBODIED_KG.items():
        HardwareSku.objects.filter(name=name).update(embodied_kg_co2e=Decimal(kg))
    GridIntensity.objects.bulk_create(
        GridIntensity(datacenter=dc, effective_from=START - timedelta(days=365),
                      g_co2e_per_kwh=Decimal(INTENSITIES[dc.name]))
        for dc in Datacenter.objects.all())
    clusters = list(Cluster.objects.order_by("name"))
    chosen = rng.sample(clusters, round(len(clusters) * leased))
    leases, unpriced_from_day3 = [], 0
    for n, cluster in enumerate(chosen):
        provider, (low, high) = CLOUDS[n % len(CLOUDS)]
        price = Decimal(f"{rng.uniform(low, high):.4f}")
        since = cluster.in_service_from
        if n % 8 == 3:  # the lease arrives late: hours before it are unpriced
            since, unpriced_from_day3 = max(since, START + timedelta(days=2)), unpriced_from_day3 + 1
        leases.append(Lease(cluster=cluster, provider=provider, effective_from=since,
                            price_per_accelerator_hour=price, includes_power=n % 2 == 0))
        if n % 4 == 1 and since < START + timedelta(days=15):
            leases.append(Lease(cluster=cluster, provider=provider, effective_from=START + timedelta(days=15),
                                price_per_accelerator_hour=price * Decimal("0.9"), includes_power=n % 2 == 0))
    Lease.objects.bulk_create(leases)
    Cluster.objects.filter(pk__in=[c.pk for c in chosen]).update(ownership="leased")
    rented = 0
    with_usage = _rollup_customers_by_cluster()
    candidates = [c for c in clusters if c.in_service_to is None and c.in_service_from <= START
                  and with_usage.get(c.name)]
    for cluster in rng.sample(candidates, min(rentals, len(candidates))):
        customer_id = rng.choice(sorted(with_usage[cluster.name]))
        Customer.objects.get_or_create(customer_id=customer_id, defaults={"name": customer_id})
        begin = START + timedelta(days=rng.randint(0, 18))
        rental_create(customer_id=customer_id, cluster=cluster.name, accelerator_hour_price=Decimal("3.20"),
                      starts_at=begin, ends_at=begin + timedelta(days=rng.randint(3, 10)), actor="bench",
                      as_of=START)
        rented += 1
    return {"leased_clusters": len(chosen), "leases": len(leases), "leases_starting_late": unpriced_from_day3,
            "rentals": rented}


def _rollup_customers_by_cluster() -> dict[str, set[str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT cluster, customer_id FROM metering_hourly_rollup WHERE cluster <> '' "
                       "GROUP BY 1, 2")
        found: dict[str, set[str]] = {}
        for cluster, customer_id in cursor.fetchall():
            found.setdefault(cluster, set()).add(customer_id)
    return found


def rollups_seed(*, rollups: int, clusters: list[dict], rng: random.Random, seed: int) -> dict:
    """COPY `rollups` hourly rollups over the month; every (customer, model, tier, region,
    cluster) key appears at most once an hour (the rollup's unique group)."""
    from django.db import connection

    customers = [f"c{n:05d}" for n in range(2000)]
    tiers, tier_weights = [t for t, _ in TIERS], [w for _, w in TIERS]
    keys_clustered, keys_deployed, keys_unplaced = set(), set(), set()
    while len(keys_clustered) < 7000:
        cluster = rng.choice(clusters)
        keys_clustered.add((rng.choice(customers), rng.choice(MODELS), rng.choices(tiers, tier_weights)[0],
                            cluster["region"], cluster["name"]))
    regions = sorted({c["region"] for c in clusters})
    while len(keys_deployed) < 1300:
        keys_deployed.add((rng.choice(customers), rng.choice(MODELS), rng.choices(tiers, tier_weights)[0],
                           rng.choice(regions), ""))
    while len(keys_unplaced) < 60:
        keys_unplaced.add((rng.choice(customers), rng.choice(MODELS), "standard", UNDEPLOYED_REGION, ""))
    window = {c["name"]: (c["from"], c["to"]) for c in clusters}
    clustered, deployed, unplaced = sorted(keys_clustered), sorted(keys_deployed), sorted(keys_unplaced)
    eligible_by_fleet: dict[frozenset, list] = {}
    columns = ("customer_id, model, service_tier, region, cluster, hour, events, input_tokens, cached_input_tokens, "
               "output_tokens, cache_write_tokens, cache_write_long_tokens, audio_input_tokens, audio_output_tokens, "
               "reasoning_tokens")
    written, randint, choice = 0, rng.randint, rng.choice
    # The newer token classes come from a generator of their own, so the rows and the
    # older classes are those of earlier runs with the same seed.
    newer = random.Random(f"{seed}-newer-classes").random
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE metering_hourly_rollup")
        with cursor.cursor.copy(f"COPY metering_hourly_rollup ({columns}) FROM STDIN") as copy:
            for h in range(HOURS):
                hour = START + h * HOUR
                in_hour = rollups * (h + 1) // HOURS - rollups * h // HOURS
                in_service = frozenset(name for name, (since, until) in window.items()
                                       if since <= hour and (until is None or hour < until))
                if in_service not in eligible_by_fleet:
                    eligible_by_fleet[in_service] = [k for k in clustered if k[4] in in_service]
                n_deployed, n_unplaced = round(in_hour * 0.145), round(in_hour * 0.005)
                for pool, count in ((eligible_by_fleet[in_service], in_hour - n_deployed - n_unplaced),
                                    (deployed, n_deployed), (unplaced, n_unplaced)):
                    for key in rng.sample(pool, min(count, len(pool))):
                        events = randint(1, 400)
                        input_tokens = events * randint(200, 4000)
                        cached = input_tokens // choice((1, 2, 4, 10)) // 2
                        output_tokens = events * randint(50, 800)
                        copy.write_row((*key, hour, events, input_tokens, cached, output_tokens,
                                        *newer_classes(newer, input_tokens, output_tokens)))
                        written += 1
    return {"rows": written, "keys": len(keys_clustered) + len(keys_deployed) + len(keys_unplaced)}


def newer_classes(random_, input_tokens: int, output_tokens: int) -> tuple[int, int, int, int, int]:
    """Cache writes short and long, audio in and out, reasoning for one rollup: a third of
    the rollups write to the cache, one in ten for an hour, one in twenty carry audio, half
    reason. With the cached part (at most half the input) the input parts stay below the
    input: a valid rollup."""
    write = input_tokens // 8 if random_() < 0.33 else 0
    write_long = input_tokens // 16 if random_() < 0.1 else 0
    audio = random_() < 0.05
    reasoning = output_tokens // 3 if random_() < 0.5 else 0
    return write, write_long, input_tokens // 10 if audio else 0, output_tokens // 4 if audio else 0, reasoning


INVARIANT_SQL = """
WITH shares AS (
    SELECT cluster_id, hour, sum(hardware_cost) AS hardware, sum(power_cost) AS power, count(*) AS n,
           sum(hardware_cost + power_cost) FILTER (WHERE reserved_idle) AS reserved
    FROM infra_inventory_costallocation WHERE hour >= %(start)s AND hour < %(end)s GROUP BY 1, 2
)
SELECT count(*) AS cluster_hours, coalesce(sum(s.reserved), 0) AS reserved_idle,
       count(*) FILTER (WHERE s.n IS NULL) AS idle_cluster_hours,
       coalesce(sum(c.hardware_cost + c.power_cost), 0) AS cost,
       coalesce(sum(s.hardware + s.power), 0) AS allocated,
       coalesce(sum(c.hardware_cost + c.power_cost) FILTER (WHERE s.n IS NULL), 0) AS idle,
       count(*) FILTER (WHERE s.n IS NOT NULL AND (s.hardware, s.power) <> (c.hardware_cost, c.power_cost))
           AS mismatched_cluster_hours,
       count(*) FILTER (WHERE s.n IS NULL AND c.weighted_tokens <> 0) AS idle_with_weight
FROM infra_inventory_clusterhourcost c
LEFT JOIN shares s ON s.cluster_id = c.cluster_id AND s.hour = c.hour
WHERE c.hour >= %(start)s AND c.hour < %(end)s
"""

CLASS_COLUMNS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_long_tokens",
                 "audio_input_tokens", "output_tokens", "audio_output_tokens")  # the priced classes: disjoint
TOKENS_SQL = f"""
SELECT (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM metering_hourly_rollup
        WHERE hour >= %(start)s AND hour < %(end)s) AS rollup_tokens,
       (SELECT coalesce(sum({" + ".join(CLASS_COLUMNS)}), 0)
        FROM infra_inventory_costallocation WHERE hour >= %(start)s AND hour < %(end)s) AS allocated_tokens,
       (SELECT coalesce(sum(tokens), 0) FROM infra_inventory_unplacedusage
        WHERE hour >= %(start)s AND hour < %(end)s) AS unplaced_tokens,
       (SELECT count(*) FROM infra_inventory_costallocation WHERE hour >= %(start)s AND hour < %(end)s) AS rows,
       (SELECT count(*) FROM infra_inventory_unplacedusage WHERE hour >= %(start)s AND hour < %(end)s)
           AS unplaced_rows,
       (SELECT count(*) FROM infra_inventory_clusterhourcost
        WHERE hour >= %(start)s AND hour < %(end)s AND power_estimated) AS estimated_cluster_hours,
       (SELECT coalesce(sum(tokens), 0) FROM infra_inventory_unpricedclusterhour
        WHERE hour >= %(start)s AND hour < %(end)s) AS unpriced_tokens,
       (SELECT count(*) FROM infra_inventory_unpricedclusterhour
        WHERE hour >= %(start)s AND hour < %(end)s) AS unpriced_cluster_hours,
       (SELECT coalesce(sum(tokens), 0) FROM infra_inventory_unplacedusage
        WHERE hour >= %(start)s AND hour < %(end)s AND reason = 'rented_to_other_customer') AS refused_tokens
"""


def invariant_check(start: datetime, end: datetime) -> dict:
    """Σ allocated + idle + reserved idle == Σ cluster-hour cost, exactly (numeric in SQL,
    Decimal here), every cluster-hour's shares (reserved idle included) == its cost, and every
    rollup token allocated, unplaced (refused included) or unpriced."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(INVARIANT_SQL, {"start": start, "end": end})
        cluster_hours, reserved, idle_hours, cost, shares, idle, mismatched, idle_weighted = cursor.fetchone()
        cursor.execute(TOKENS_SQL, {"start": start, "end": end})
        (rollup_tokens, allocated_tokens, unplaced_tokens, rows, unplaced_rows, estimated, unpriced_tokens,
         unpriced_hours, refused_tokens) = cursor.fetchone()
    assert all(isinstance(v, Decimal) for v in (cost, shares, idle, reserved))
    allocated = shares - reserved  # to usage
    exact = allocated + idle + reserved == cost and mismatched == 0 and idle_weighted == 0
    conserved = int(rollup_tokens) == int(allocated_tokens) + int(unplaced_tokens) + int(unpriced_tokens)
    return {
        "cluster_hours": cluster_hours, "idle_cluster_hours": idle_hours, "power_estimated_cluster_hours": estimated,
        "unpriced_cluster_hours": unpriced_hours, "allocation_rows": rows, "unplaced_rows": unplaced_rows,
        "cost_usd": str(cost), "allocated_usd": str(allocated), "idle_usd": str(idle),
        "reserved_idle_usd": str(reserved),
        "allocated_plus_idle_plus_reserved_idle_equals_cost": exact,
        "cluster_hours_shares_not_equal_cost": mismatched,
        "tokens": {"rollups": int(rollup_tokens), "allocated": int(allocated_tokens),
                   "unplaced": int(unplaced_tokens), "refused_on_rented": int(refused_tokens),
                   "unpriced": int(unpriced_tokens), "conserved": conserved},
        "ok": exact and conserved,
    }


def allocate_run(mode: str, profile: str | None) -> dict:
    """Allocate the month: `days` (30 day-sized calls, as allocate_costs does), `days-2jobs`
    (the same in two processes, `allocate_costs --jobs 2`) or `month` (one call)."""
    from infra_inventory.services import costs_allocate, costs_allocate_days
    from metering.services import utc_now

    end = START + HOURS * HOUR
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler:
        profiler.enable()
    if mode == "month":
        summaries = [costs_allocate(start=START, end=end, as_of=utc_now())]
    else:
        jobs = 2 if mode == "days-2jobs" else 1
        summaries = list(costs_allocate_days(start=START, end=end, as_of=utc_now(), jobs=jobs))
    seconds = time.perf_counter() - began
    if profiler:
        profiler.disable()
        profiler.dump_stats(f"{profile}-{mode}.prof")
    totals = {key: sum(getattr(s, key) for s in summaries) for key in ("cluster_hours", "allocations",
                                                                        "unplaced_tokens")}
    check = invariant_check(START, end)
    return {
        "calls": len(summaries), "seconds": round(seconds, 2),
        "cluster_hours": totals["cluster_hours"], "allocation_rows": totals["allocations"],
        "unplaced_tokens": totals["unplaced_tokens"],
        "allocation_rows_per_s": round(totals["allocations"] / seconds),
        "check": check,
        "target": target(round(seconds, 2), below=TARGET_S),
    }


def baselines(rows: int) -> dict:
    """The same month's rollups grouped per cluster-hour in SQL; the service's own usage
    query with its rows fetched; COPY of `rows` allocation rows into an unindexed table."""
    from django.db import connection

    from infra_inventory.services import ALLOCATION_COLUMNS, USAGE_SQL

    end = START + HOURS * HOUR
    out = {}
    with connection.cursor() as cursor:
        began = time.perf_counter()
        cursor.execute("SELECT cluster, region, hour, count(*), sum(input_tokens - cached_input_tokens), "
                       "sum(cached_input_tokens), sum(output_tokens) FROM metering_hourly_rollup "
                       "WHERE hour >= %s AND hour < %s GROUP BY 1, 2, 3", [START, end])
        groups = len(cursor.fetchall())
        out["sql_group_by_cluster_hour"] = {"seconds": round(time.perf_counter() - began, 2), "groups": groups}

        began = time.perf_counter()
        for d in range(HOURS // 24):  # as the service runs it, per day
            cursor.execute(USAGE_SQL, [START + d * DAY, START + (d + 1) * DAY])
            cursor.fetchall()
        out["service_usage_query_per_day_fetched"] = {"seconds": round(time.perf_counter() - began, 2)}

        cursor.execute(f"DROP TABLE IF EXISTS {COPY_BASELINE_TABLE}")
        cursor.execute(f"CREATE TABLE {COPY_BASELINE_TABLE} (LIKE infra_inventory_costallocation)")  # no indexes
        columns = ", ".join(ALLOCATION_COLUMNS)
        cursor.execute(f"SELECT {columns} FROM infra_inventory_costallocation LIMIT %s", [rows])
        data = cursor.fetchall()
        began = time.perf_counter()
        with cursor.cursor.copy(f"COPY {COPY_BASELINE_TABLE} (id, {columns}) FROM STDIN") as copy:
            for n, row in enumerate(data):
                copy.write_row((n, *row))
        copy_s = time.perf_counter() - began
        cursor.execute(f"DROP TABLE {COPY_BASELINE_TABLE}")
        out["copy_allocation_rows_unindexed"] = {"seconds": round(copy_s, 2), "rows": len(data),
                                                 "rows_per_s": round(len(data) / copy_s)}
    return out


def conditions(database_url: str) -> dict:
    import subprocess

    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent.parent,
                            capture_output=True, text=True, check=False)
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit.stdout.strip(), "cpus": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "database": database_url.rsplit("/", 1)[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollups", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--runs", default="days,days-2jobs,month",
                        help="days, days-2jobs and/or month (comma-separated), in order")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--leased", type=float, default=0.0, help="share of the clusters leased (e.g. 0.33)")
    parser.add_argument("--rentals", type=int, default=0, help="clusters rented to a customer for 3–10 days")
    parser.add_argument("--profile", help="cProfile each run to <PROFILE>-<run>.prof (slows the run)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_COSTS_DATABASE_URL", DATABASE_URL_DEFAULT))
    args = parser.parse_args()
    figures = {"benchmark": "allocation", "conditions": conditions(args.database_url)}
    database_create(args.database_url)
    os.environ.update(DATABASE_URL=args.database_url, DJANGO_SETTINGS_MODULE="config.settings")
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    rng = random.Random(args.seed)
    began = time.perf_counter()
    clusters = fleet_seed(clusters=args.clusters, rng=rng)
    fleet_s = time.perf_counter() - began
    began = time.perf_counter()
    seeded = rollups_seed(rollups=args.rollups, clusters=clusters, rng=rng, seed=args.seed)
    rollups_s = time.perf_counter() - began
    mixed = mixed_seed(leased=args.leased, rentals=args.rentals, seed=args.seed) if args.leased or args.rentals \
        else None
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_hourly_rollup")
        cursor.execute("ANALYZE infra_inventory_powerreading")
    figures["data"] = {
        "clusters": len(clusters), "datacenters": len(DATACENTERS), "skus": len(SKUS), "hours": HOURS,
        "clusters_with_readings": sum(1 for c in clusters if c["readings"]),
        "power_readings": sum(c["readings"] for c in clusters),
        "hourly_rollup_rows": seeded["rows"], "rollup_keys": seeded["keys"],
        "seed_fleet_s": round(fleet_s, 2), "seed_rollups_copy_s": round(rollups_s, 2),
        "rollup_rows_per_s_copy": round(seeded["rows"] / rollups_s),
        "mixed": mixed,
    }
    figures["runs"] = {}
    for mode in [m.strip() for m in args.runs.split(",") if m.strip()]:
        run = allocate_run(mode, args.profile)
        run["rollups_per_s"] = round(seeded["rows"] / run["seconds"])
        run["peak_rss_mb_so_far"] = peak_rss_mb()
        figures["runs"][mode] = run
    rows = max(r["allocation_rows"] for r in figures["runs"].values()) if figures["runs"] else 0
    figures["baselines"] = baselines(rows)
    figures["conditions"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["ok"] = all(r["check"]["ok"] for r in figures["runs"].values())
    figures_print(figures)


if __name__ == "__main__":
    main()
