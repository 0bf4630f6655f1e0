"""The demo's cost step: a mixed inference fleet (demo figures), its cost allocated to the
month's usage, and the unit economics that come out (DESIGN.md §4).

    fleet_seed(start=, end=)               # after the catalog exists; before allocation
    unit_economics_print(start=, end=)     # after prices are published and usage is rolled up

unit_economics_print allocates whatever hours of [start, end) are not allocated yet (or are
stale), so calling costs_allocate(start=, end=, as_of=) in between is optional: when it was
called, nothing is allocated again.

All inventory figures are demo figures, of the right order for late 2026 but not quotes:
list prices per accelerator, board power, PUE, power prices and serving capacity. The fleet
is a scale model sized to the demo's 200,000 requests: each cluster is one accelerator (one
CS-3 system), each model tier has clusters of its own, and the traffic keeps each busy about
half the time on average, as a provider's fleet is; the CS-3 was commissioned at the end of
the month and served nothing (idle cost). Two clusters are leased from clouds at different
rates (LEASES): ams-mi300x-a from CoreWeave on demand, power billed apart; ams-trn2-b from
AWS on a one-year reservation, power included. Each datacenter has a grid intensity and each
SKU an embodied footprint (demo figures too), so the month has emissions. Capacity is what one accelerator sustains for the
tier it serves at interactive latency, in weighted tokens (the SKUs keep the default
weights: input × 1 + cached × 0.1 + output × 4, cache writes × 1.25 or × 2 for an hour's
lifetime, audio in × 2 and out × 8) per second: a frontier-class replica spans many accelerators, so each streams
little; a nano model is cheap to serve but sells for little, so its margin is thin.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from scripts.demo_capacity import RENTAL, RENTAL_DAYS
from scripts.traffic import Dedicated, Shape

HOUR, DAY = timedelta(hours=1), timedelta(days=1)

# name, vendor, accelerator, unit cost USD, amortization months, board watts
SKUS = (
    ("h100-sxm", "NVIDIA", "H100 SXM5 80GB", "30000.00", 48, 700),
    ("h200-sxm", "NVIDIA", "H200 SXM 141GB", "35000.00", 48, 700),
    ("b200", "NVIDIA", "B200 192GB", "45000.00", 48, 1000),
    ("mi300x", "AMD", "Instinct MI300X 192GB", "15000.00", 48, 750),
    ("trn2", "AWS", "Trainium2", "12000.00", 36, 500),
    ("cs-3", "Cerebras", "CS-3 system (WSE-3)", "2500000.00", 60, 23000),
)
# kgCO2e embodied per accelerator (manufacturing and transport), amortized like the cost
EMBODIED_KG_CO2E = {"h100-sxm": "1300", "h200-sxm": "1400", "b200": "1700", "mi300x": "1500", "trn2": "900",
                    "cs-3": "25000"}
DATACENTERS = (("iad-1", "us-east", "1.20"), ("ams-1", "eu-west", "1.35"))
# datacenter, from (days after start), gCO2e per kWh of the grid
GRID_INTENSITIES = (("iad-1", -365, "380"), ("ams-1", -365, "330"), ("ams-1", 14, "290"))
# datacenter, from (days after start; negative: before the month), USD per kWh
POWER_CONTRACTS = (("iad-1", -365, "0.0800"), ("ams-1", -365, "0.1400"), ("ams-1", 14, "0.1600"))
# name, datacenter, sku, accelerators, in service from (days after start; None: 6 hours before the end),
# until, serving capacity per accelerator (weighted tokens per second, for the tier it serves)
CLUSTERS = (
    ("iad-h100-a", "iad-1", "h100-sxm", 1, -400, None, 350),   # frontier
    ("iad-h200-a", "iad-1", "h200-sxm", 1, -200, None, 420),   # frontier
    ("ams-mi300x-a", "ams-1", "mi300x", 1, -300, None, 320),   # frontier
    ("iad-b200-a", "iad-1", "b200", 1, -90, None, 1000),       # mini
    ("ams-trn2-a", "ams-1", "trn2", 1, -120, None, 1400),      # nano
    ("ams-trn2-b", "ams-1", "trn2", 1, 7, None, 1400),         # nano, added capacity from the 8th
    ("iad-cs3-a", "iad-1", "cs-3", 1, None, None, 0),          # commissioned at the end of the month: idle
)
# leased clusters: cluster → provider, USD per accelerator-hour, power included, committed for (days after start)
LEASES = {
    "ams-mi300x-a": ("CoreWeave", "0.950000", False, None),
    "ams-trn2-b": ("AWS", "0.520000", True, 365),
}
# model tier, region → (cluster, share): where usage without a cluster is placed.
DEPLOYMENTS = {
    ("frontier", "us-east"): (("iad-h100-a", "0.5"), ("iad-h200-a", "0.5")),
    ("mini", "us-east"): (("iad-b200-a", "1"),),
    ("frontier", "eu-west"): (("ams-mi300x-a", "1"),),
    ("nano", "eu-west"): (("ams-trn2-a", "0.5"), ("ams-trn2-b", "0.5")),
}
# The demo's requests: share of requests per model and their shape. Frontier requests are
# agentic, long and mostly cached; mini ones chat-sized; nano ones bulk document extraction.
# Gateways tag most requests with the cluster that served them; untagged ones ("") are placed
# by the deployments above; mini's few eu-west requests have no deployment: unplaced. For the
# month's last two days hooli rents iad-h200-a (scripts.demo_capacity): its gateway sends all
# of hooli's us-east frontier requests there, and no one else's (those go untagged and the
# deployment map places them on iad-h100-a).
MODEL_WEIGHTS = [0.5, 0.3, 0.2]
SHAPES = {
    "gpt-5.4": Shape(10.2, 0.5, 6.9, 0.5, (0.5, 0.7, 0.8, 0.9, 0.9), routes={
        "us-east": (0.7, ("iad-h100-a", "iad-h200-a", "")), "eu-west": (0.3, ("ams-mi300x-a",))},
        dedicated=Dedicated(RENTAL["customer_id"], RENTAL["cluster"], RENTAL_DAYS)),
    "gpt-5.4-mini": Shape(9.75, 0.7, 7.8, 0.6, (0, 0.3, 0.5, 0.7, 0.8), routes={
        "us-east": (0.95, ("iad-b200-a", "iad-b200-a", "")), "eu-west": (0.05, ("",))}),
    "gpt-5.4-nano": Shape(11.2, 0.6, 8.15, 0.6, (0, 0, 0, 0.2, 0.5), routes={"eu-west": (1.0, ("",))}),
}
METERED_CLUSTER = "iad-h100-a"  # has hourly IT energy telemetry; the others are estimated


def _it_kwh(*, accelerators: int, board_watts: int, hour: datetime) -> Decimal:
    """Measured IT energy of the demo: 55% of board power at night, up to 90% at 13:00 UTC,
    to 0.1 Wh."""
    busy = Decimal(max(0, 7 - abs(hour.hour - 13))) / 7  # 0 before 06:00 and after 20:00, 1 at 13:00
    load = Decimal("0.55") + Decimal("0.35") * busy
    return (accelerators * board_watts * load / 1000).quantize(Decimal("0.0001"))


def fleet_seed(*, start: datetime, end: datetime) -> dict:
    """The demo fleet for the month [start, end): SKUs, datacenters, power contracts (ams-1's
    price changes on the 15th) and grid intensities, clusters (two leased), deployments of the
    catalog's models by tier, and hourly power readings for one cluster (a few hours missing:
    estimated). Returns counts."""
    from infra_inventory.models import (
        Cluster, Datacenter, Deployment, GridIntensity, HardwareSku, Lease, PowerContract, PowerReading,
    )
    from metering.models import CatalogModel
    from metering.selectors import model_tier_at

    skus = {name: HardwareSku.objects.create(name=name, vendor=vendor, accelerator=accelerator,
                                             unit_cost=Decimal(cost), amortization_months=months, board_watts=watts,
                                             embodied_kg_co2e=Decimal(EMBODIED_KG_CO2E[name]))
            for name, vendor, accelerator, cost, months, watts in SKUS}
    datacenters = {name: Datacenter.objects.create(name=name, region=region, pue=Decimal(pue))
                   for name, region, pue in DATACENTERS}
    for datacenter, days, price in POWER_CONTRACTS:
        PowerContract.objects.create(datacenter=datacenters[datacenter], effective_from=start + days * DAY,
                                     price_per_kwh=Decimal(price))
    for datacenter, days, intensity in GRID_INTENSITIES:
        GridIntensity.objects.create(datacenter=datacenters[datacenter], effective_from=start + days * DAY,
                                     g_co2e_per_kwh=Decimal(intensity))
    clusters = {}
    for name, datacenter, sku, count, since_days, until_days, _ in CLUSTERS:
        since = end - 6 * HOUR if since_days is None else start + since_days * DAY
        clusters[name] = Cluster.objects.create(
            name=name, datacenter=datacenters[datacenter], sku=skus[sku], accelerator_count=count,
            in_service_from=since, in_service_to=None if until_days is None else start + until_days * DAY,
            ownership=Cluster.Ownership.LEASED if name in LEASES else Cluster.Ownership.OWNED)
    for name, (provider, price, includes_power, committed_days) in LEASES.items():
        Lease.objects.create(cluster=clusters[name], provider=provider, effective_from=clusters[name].in_service_from,
                             price_per_accelerator_hour=Decimal(price), includes_power=includes_power,
                             committed_until=None if committed_days is None else start + committed_days * DAY)
    deployments = 0
    for model in CatalogModel.objects.all():
        tier = model_tier_at(model.name, start)
        for region in ("us-east", "eu-west"):
            for cluster, share in DEPLOYMENTS.get((tier, region), ()):
                Deployment.objects.create(model=model.name, region=region, cluster=clusters[cluster],
                                          share=Decimal(share))
                deployments += 1
    metered, readings, hour = clusters[METERED_CLUSTER], [], start
    while hour < end:
        if hour.day % 9 or hour.hour != 3:  # telemetry gaps: 03:00 on the 9th, 18th and 27th
            readings.append(PowerReading(cluster=metered, hour=hour, received_at=hour + HOUR, it_kwh=_it_kwh(
                accelerators=metered.accelerator_count, board_watts=metered.sku.board_watts, hour=hour)))
        hour += HOUR
    PowerReading.objects.bulk_create(readings)
    print(f"fleet (demo figures): {len(skus)} SKUs, {len(datacenters)} datacenters, {len(clusters)} clusters "
          f"({len(LEASES)} leased: {', '.join(f'{n} from {p}' for n, (p, *_) in LEASES.items())}), "
          f"{deployments} deployments, {len(readings)} hourly power readings for {METERED_CLUSTER}")
    return {"skus": len(skus), "clusters": len(clusters), "deployments": deployments, "readings": len(readings)}


def _table(title: str, key: str, rows, *, outside=None) -> None:
    """One row per group; `outside`: the capacity revenue the grouping cannot split (in the
    totals only), printed under the rows."""
    from billing.rating.money import money_text as money

    print(f"\n-- {title}")
    print(f"{key:14} {'tokens':>13} {'revenue':>10} {'capacity':>9} {'hardware':>10} {'power':>9} {'margin':>10} "
          f"{'margin %':>9} {'$ / 1M tok':>11} {'kWh / 1M':>9} {'gCO2e / 1M':>11}")
    for label, f in rows:
        percent = "n/a" if f.margin_percent_shown is None else f"{f.margin_percent_shown}"
        per_million = "n/a" if f.cost_per_million_tokens is None else f"{f.cost_per_million_tokens:.4f}"
        kwh = "n/a" if f.kwh_per_million_tokens is None else f"{f.kwh_per_million_tokens:.3f}"
        co2 = "n/a" if f.g_co2e_per_million_tokens is None else f"{f.g_co2e_per_million_tokens:.1f}"
        print(f"{label or '(no tier)':14} {f.tokens:>13,} {money(f.revenue) or 'n/a':>10} "
              f"{money(f.capacity_revenue):>9} {money(f.hardware_cost_shown):>10} {money(f.power_cost_shown):>9} "
              f"{money(f.gross_margin_shown) or 'n/a':>10} {percent:>9} {per_million:>11} {kwh:>9} {co2:>11}")
    if outside:
        print(f"{'(on no row)':14} {'':>13} {money(outside):>10} {money(outside):>9}  capacity this grouping "
              "cannot split: in the totals only")


def _allocate_missing(start: datetime, end: datetime) -> None:
    from infra_inventory.services import costs_allocate, hours_stale
    from metering.services import utc_now

    stale = hours_stale(start=start, end=end)
    if stale:
        summary = costs_allocate(start=stale[0], end=stale[-1] + HOUR, as_of=utc_now())
        print(f"allocated {summary.hours} hours: {summary.cluster_hours:,} cluster-hours, "
              f"{summary.allocations:,} allocation rows")


def _worked_hour(start: datetime, end: datetime) -> None:
    """One cluster-hour of the metered cluster, worked by hand from the stored inventory."""
    from billing.rating.money import money_text as money
    from infra_inventory.allocation import TOKEN_CLASSES
    from infra_inventory.models import ClusterHourCost, CostAllocation, PowerContract

    hour = start + 14 * DAY + 15 * HOUR
    cost = ClusterHourCost.objects.select_related("cluster__sku", "cluster__datacenter").filter(
        cluster__name=METERED_CLUSTER, hour=hour).first()
    if cost is None:
        return
    cluster, sku, datacenter = cost.cluster, cost.cluster.sku, cost.cluster.datacenter
    price = PowerContract.objects.filter(datacenter=datacenter, effective_from__lte=hour).order_by(
        "-effective_from").first().price_per_kwh
    print(f"\n-- one cluster-hour by hand: {cluster.name}, {hour:%Y-%m-%d %H:00} UTC")
    print(f"hardware = accelerators × unit cost / (months × 730) = {cluster.accelerator_count} × {sku.unit_cost:,} "
          f"/ ({sku.amortization_months} × 730) = {cost.hardware_cost:f} USD")
    source = "estimated: accelerators × board W / 1000" if cost.power_estimated else "measured reading"
    print(f"power    = IT kWh × PUE × USD/kWh = {cost.it_kwh.normalize():f} ({source}) × {datacenter.pue} × "
          f"{price} = {cost.power_cost:f} USD  (energy {cost.energy_kwh.normalize():f} kWh)")
    weights = " + ".join(f"{token_class} × {getattr(sku, f'weight_{token_class}').normalize()}"
                         for token_class in TOKEN_CLASSES)
    print(f"total    = {cost.hardware_cost + cost.power_cost:f} USD, shared by weighted tokens "
          f"({weights}) among {cost.weighted_tokens.normalize():,f} weighted tokens:")
    shares = CostAllocation.objects.filter(cluster=cluster, hour=hour).order_by("-weighted_tokens")
    for share in shares[:4]:
        print(f"  {share.customer_id:10} {share.model:13} {share.service_tier:9} "
              f"{share.weighted_tokens.normalize():>12,f} → {share.hardware_cost + share.power_cost:f} "
              f"({money(share.hardware_cost + share.power_cost)}) USD")
    if shares.count() > 4:
        print(f"  … and {shares.count() - 4} more; the shares sum to the hour's cost exactly (largest remainder)")


def cluster_utilization(*, start: datetime, end: datetime) -> dict[str, float]:
    """Per cluster with a demo capacity: weighted tokens served / (capacity × accelerators ×
    seconds in service), from the allocated cluster-hours of [start, end)."""
    from django.db.models import Count, Sum

    from infra_inventory.models import ClusterHourCost

    capacity = {name: per_s * count for name, _, _, count, _, _, per_s in CLUSTERS if per_s}
    served = ClusterHourCost.objects.filter(hour__gte=start, hour__lt=end, cluster__name__in=capacity).values(
        "cluster__name").annotate(weighted=Sum("weighted_tokens"), hours=Count("id"))
    return {row["cluster__name"]: float(row["weighted"]) / (capacity[row["cluster__name"]] * 3600 * row["hours"])
            for row in served}


def unit_economics_print(*, start: datetime, end: datetime) -> None:
    """Tables by model tier and by datacenter, idle cost, unplaced tokens, one hour by hand."""
    from billing.rating.money import money_text as money
    from infra_inventory.selectors import unit_economics

    _allocate_missing(start, end)
    by_tier = unit_economics(start=start, end=end, group_by=["model_tier"])
    by_datacenter = unit_economics(start=start, end=end, group_by=["datacenter"])
    by_cluster = unit_economics(start=start, end=end, group_by=["cluster"])
    by_ownership = unit_economics(start=start, end=end, group_by=["ownership"])
    by_customer = unit_economics(start=start, end=end, group_by=["customer"])
    print("revenue: usage rated at the unit prices in force, before contract discounts, minimums and credits, plus "
          "capacity (reservations and rentals, as their invoice lines; usage a rental covers is not priced again); "
          "costs: hardware amortization (owned) or lease (leased) + power allocated by weighted tokens")
    _table(f"unit economics by model tier, {start:%Y-%m}", "model tier",
           [(r.keys["model_tier"], r.figures) for r in by_tier.rows], outside=by_tier.capacity_revenue_outside_rows)
    _table(f"unit economics by customer, {start:%Y-%m}", "customer",
           [(r.keys["customer"], r.figures) for r in by_customer.rows],
           outside=by_customer.capacity_revenue_outside_rows)
    _table(f"unit economics by datacenter, {start:%Y-%m}", "datacenter",
           [(r.keys["datacenter"], r.figures) for r in by_datacenter.rows],
           outside=by_datacenter.capacity_revenue_outside_rows)
    _table(f"owned vs leased, {start:%Y-%m} ({', '.join(f'{n}: {p}' for n, (p, *_) in LEASES.items())})",
           "ownership", [(r.keys["ownership"], r.figures) for r in by_ownership.rows],
           outside=by_ownership.capacity_revenue_outside_rows)
    utilization = cluster_utilization(start=start, end=end)
    print(f"\n-- cluster cost, {start:%Y-%m} (idle: cluster-hours that served nothing; utilization: weighted "
          "tokens served / demo capacity over the hours in service)")
    print(f"{'cluster':14} {'hours':>6} {'tokens':>13} {'allocated':>10} {'idle':>9} {'reserved':>9} {'total':>10} "
          f"{'util.':>6} {'capacity':>9}")
    for row in by_cluster.rows:
        f, name = row.figures, row.keys["cluster"]
        print(f"{name:14} {f.cluster_hours or 0:>6} {f.tokens:>13,} "
              f"{money(f.hardware_cost_shown + f.power_cost_shown):>10} {money(f.idle_cost_shown):>9} "
              f"{money(f.reserved_idle_cost_shown):>9} {money(f.total_cost_shown):>10} "
              f"{utilization.get(name, 0):>6.0%} {money(f.capacity_revenue):>9}")
    print("(reserved: a renter's idle rented hours; capacity: rental and pinned-reservation revenue of the cluster)")
    totals = by_tier.totals
    print(f"\nrevenue {money(totals.revenue)} USD = usage {money(totals.usage_revenue)} + capacity "
          f"{money(totals.capacity_revenue)}; {totals.covered_tokens:,} tokens served on rented clusters to their "
          "renters, covered by the rental (shown, not priced again)")
    print(f"\nallocated {money(totals.hardware_cost_shown + totals.power_cost_shown)} + idle "
          f"{money(totals.idle_cost_shown)} + reserved idle {money(totals.reserved_idle_cost_shown)} = total "
          f"{money(totals.total_cost_shown)} USD (exactly: {totals.cost:f} + {totals.idle_cost:f} + "
          f"{totals.reserved_idle_cost:f} = {totals.fleet_hardware_cost + totals.fleet_power_cost:f})")
    print(f"emissions: {totals.fleet_emissions_kg_co2e:,.1f} kgCO2e (facility kWh × grid intensity + embodied), "
          f"{totals.emissions_kg_co2e:,.1f} of it allocated to usage, "
          f"{totals.g_co2e_per_million_tokens or 0:.1f} gCO2e per 1M tokens")
    print(f"unplaced tokens: {by_tier.unplaced_tokens:,} (tagged with a cluster not in service at the time, "
          "or no deployment for their model and region, or served on a cluster rented to another customer: "
          f"{by_tier.refused_tokens:,}): reported, never priced against a cost")
    if by_tier.unpriced_tokens:
        print(f"unpriced: {by_tier.unpriced_tokens:,} tokens on {by_tier.unpriced_cluster_hours} leased cluster-hours "
              "with no lease in force")
    if by_tier.hours_not_allocated:
        print(f"hours not allocated: {by_tier.hours_not_allocated}")
    _worked_hour(start, end)
