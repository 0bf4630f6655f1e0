"""Cost allocation (DESIGN.md §4): the pure core's invariants with many examples, the same
invariant through costs_allocate on the real database for random fleets, and the cases that
matter month by month (measured vs estimated power, a power price change, a cluster entering
and leaving service, late events and late readings)."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import PriceBook
from billing.services.price_books import price_book_create
from infra_inventory.allocation import (
    MICRO, TOKEN_CLASSES, ClusterHourCost as HourCost, Deployment as Placement, TokenWeights, UsageTokens, allocate,
    place, split_largest_remainder,
)
from infra_inventory.models import (
    TOKEN_COLUMNS, AllocatedHour, Cluster, ClusterHourCost, CostAllocation, Datacenter, Deployment, HardwareSku,
    PowerContract, PowerReading, UnplacedUsage,
)
from infra_inventory.selectors import unit_economics
from infra_inventory.services import USAGE_SQL, costs_allocate, costs_allocate_stale, hours_stale
from metering import token_classes
from metering.models import HourlyRollup
from metering.services import utc_now
from scripts.demo_pricing import price_list

HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
SINCE = datetime(2026, 1, 1, tzinfo=UTC)  # inventory, power contracts and list prices in force from here
MODELS = ("gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- building a fleet and usage through the ORM (shared with test_unit_economics) ----------


def sku_make(name="h100-sxm", *, vendor="NVIDIA", unit_cost="35040.00", months=48, watts=1000, **weights):
    return HardwareSku.objects.create(name=name, vendor=vendor, accelerator=name.upper(), unit_cost=Decimal(unit_cost),
                                      amortization_months=months, board_watts=watts, **weights)


def datacenter_make(name="iad-1", *, region="us-east", pue="1.25", price="0.10", since=SINCE):
    datacenter = Datacenter.objects.create(name=name, region=region, pue=Decimal(pue))
    if price is not None:
        PowerContract.objects.create(datacenter=datacenter, effective_from=since, price_per_kwh=Decimal(price))
    return datacenter


def cluster_make(name, datacenter, sku, *, count=8, since=SINCE, until=None):
    return Cluster.objects.create(name=name, datacenter=datacenter, sku=sku, accelerator_count=count,
                                  in_service_from=since, in_service_to=until)


def rollup(customer_id, model, hour, *, input_tokens=0, cached=0, output=0, cluster="", region="",
           service_tier="standard", events=1, cache_write=0, cache_write_long=0, audio_input=0, audio_output=0,
           reasoning=0):
    """Usage as the consumer rolls it up: totals and parts, as on the event (`input_tokens`
    counts the cached, cache-write and audio ones too; `output` the audio and reasoning ones)."""
    return HourlyRollup.objects.create(customer_id=customer_id, model=model, service_tier=service_tier, region=region,
                                       cluster=cluster, hour=hour, events=events, input_tokens=input_tokens,
                                       cached_input_tokens=cached, output_tokens=output, cache_write_tokens=cache_write,
                                       cache_write_long_tokens=cache_write_long, audio_input_tokens=audio_input,
                                       audio_output_tokens=audio_output, reasoning_tokens=reasoning)


def reading(cluster, hour, it_kwh, *, received_at=None):
    return PowerReading.objects.create(cluster=cluster, hour=hour, it_kwh=Decimal(it_kwh),
                                       received_at=received_at or hour + HOUR)


def list_prices_publish(since=SINCE):
    if PriceBook.objects.filter(effective_from=since).exists():
        return PriceBook.objects.get(effective_from=since)
    return price_book_create(effective_from=since, currency="USD", prices=price_list(), actor="test", as_of=since)


def hand_hour_cost(cluster: Cluster, hour: datetime) -> tuple[Decimal, Decimal]:
    """DESIGN.md §4 by hand: hardware = count × unit cost / (months × 730); power = it_kWh ×
    PUE × price, it_kWh the reading or count × watts / 1000; each fixed to micro-dollars."""
    sku, datacenter = cluster.sku, cluster.datacenter
    hardware = Decimal(cluster.accelerator_count) * sku.unit_cost / Decimal(sku.amortization_months * 730)
    measured = PowerReading.objects.filter(cluster=cluster, hour=hour).first()
    it_kwh = measured.it_kwh if measured else Decimal(cluster.accelerator_count * sku.board_watts) / 1000
    contract = datacenter.power_contracts.filter(effective_from__lte=hour).order_by("-effective_from").first()
    price = contract.price_per_kwh if contract else Decimal(0)
    power = it_kwh * datacenter.pue * price
    return hardware.quantize(MICRO, ROUND_HALF_UP), power.quantize(MICRO, ROUND_HALF_UP)


def hand_fleet_cost(start: datetime, end: datetime) -> Decimal:
    total, hour = Decimal(0), start
    while hour < end:
        for cluster in Cluster.objects.select_related("sku", "datacenter"):
            if cluster.in_service(hour):
                total += sum(hand_hour_cost(cluster, hour))
        hour += HOUR
    return total


def inventory_clear():
    for model in (CostAllocation, ClusterHourCost, UnplacedUsage, AllocatedHour, HourlyRollup, PowerReading,
                  Deployment, Cluster, PowerContract, Datacenter, HardwareSku):
        model.objects.all().delete()


# --- the pure core, many examples ----------------------------------------------------------

micro_amounts = st.integers(min_value=0, max_value=10**10).map(lambda n: n * MICRO)
token_counts = st.integers(min_value=0, max_value=10**9)
CLASS_COUNTS = len(TOKEN_CLASSES)


def _usage_tokens(key, counts, reasoning_share) -> UsageTokens:
    """Every class of `counts` (TOKEN_CLASSES order), reasoning a share of output + audio output."""
    tokens = dict(zip(TOKEN_CLASSES, counts))
    reasoning = int((tokens["output"] + tokens["audio_output"]) * reasoning_share)
    return UsageTokens(key, **tokens, reasoning=reasoning)


class_counts = st.tuples(*[token_counts] * CLASS_COUNTS)
reasoning_shares = st.sampled_from([Decimal(0), Decimal("0.3"), Decimal(1)])
usage_tokens = st.builds(_usage_tokens, st.just(("acme", "gpt-5.4", "standard")), class_counts, reasoning_shares)
usages = st.lists(st.tuples(class_counts, reasoning_shares), max_size=12).map(
    lambda items: [_usage_tokens(("k", i), counts, share) for i, (counts, share) in enumerate(items)])
weight_values = st.decimals(min_value=0, max_value=10, places=4)
weights_st = st.builds(lambda values: TokenWeights(**dict(zip(TOKEN_CLASSES, values))),
                       st.tuples(*[weight_values] * CLASS_COUNTS))


def test_the_core_weighs_the_priced_classes_of_the_ledger():
    assert TOKEN_CLASSES == token_classes.CLASSES
    assert TokenWeights() == TokenWeights(input=Decimal(1), cached_input=Decimal("0.1"), output=Decimal(4),
                                          cache_write=Decimal("1.25"), cache_write_long=Decimal(2),
                                          audio_input=Decimal(2), audio_output=Decimal(8))


@given(usage=usage_tokens, weights=weights_st)
def test_core_weighted_tokens_weigh_each_class_by_its_weight_and_reasoning_not_again(usage, weights):
    by_hand = sum((getattr(usage, c) * getattr(weights, c) for c in TOKEN_CLASSES), Decimal(0))

    assert usage.weighted(weights) == by_hand
    assert usage.tokens == sum(usage.counts()[:CLASS_COUNTS])


@given(cost=st.builds(lambda h, p, e: HourCost(h, p, Decimal(0), e, True), micro_amounts, micro_amounts,
                      micro_amounts),
       usage=usages, weights=weights_st)
@settings(max_examples=600)
def test_core_shares_sum_to_the_hour_cost_exactly(cost, usage, weights):
    shares = allocate(cost, usage, weights)

    if not usage or sum(u.weighted(weights) for u in usage) == 0:
        assert shares == []  # idle: the whole hour is idle cost
        return
    assert sum(s.hardware for s in shares) == cost.hardware
    assert sum(s.power for s in shares) == cost.power
    assert sum(s.energy_kwh for s in shares) == cost.energy_kwh
    weight_sum = sum(s.weighted_tokens for s in shares)
    for share in shares:
        assert share.hardware % MICRO == 0 and share.power % MICRO == 0
        exact = cost.hardware * share.weighted_tokens / weight_sum
        assert abs(share.hardware - exact) < MICRO  # largest remainder: never a whole unit off


@given(hours=st.lists(st.tuples(micro_amounts, micro_amounts, usages), min_size=1, max_size=10),
       group_of=st.sampled_from([lambda key: key[1] % 2, lambda key: key[1], lambda key: 0, lambda key: key[1] // 3]))
@settings(max_examples=400)
def test_core_allocated_plus_idle_is_the_total_for_any_grouping(hours, group_of):
    weights = TokenWeights()
    total, idle, groups = Decimal(0), Decimal(0), {}

    for hardware, power, usage in hours:
        cost = HourCost(hardware, power, Decimal(0), Decimal(0), False)
        total += cost.total
        shares = allocate(cost, usage, weights)
        if not shares:
            idle += cost.total
        for share in shares:
            groups[group_of(share.key)] = groups.get(group_of(share.key), Decimal(0)) + share.hardware + share.power

    assert sum(groups.values(), Decimal(0)) + idle == total


@given(usage=usage_tokens,
       shares=st.lists(st.decimals(min_value=Decimal("0.0001"), max_value=1, places=4), min_size=1, max_size=5))
@settings(max_examples=300)
def test_core_placement_neither_loses_nor_invents_tokens(usage, shares):
    placed = place(usage, [Placement(f"c{i}", share) for i, share in enumerate(shares)])

    for position, name in enumerate((*TOKEN_CLASSES, "reasoning")):
        assert sum(p.counts()[position] for _, p in placed) == getattr(usage, name), name
    assert all(p.reasoning <= p.output + p.audio_output for _, p in placed)  # a part stays within its whole


@given(units=st.integers(min_value=0, max_value=10**12),
       weights=st.lists(st.decimals(min_value=0, max_value=10**6, places=4), min_size=1, max_size=20))
@settings(max_examples=400)
def test_core_largest_remainder_is_exact(units, weights):
    if sum(weights) == 0:
        with pytest.raises(ValueError):
            split_largest_remainder(units * MICRO, weights)
        return

    parts = split_largest_remainder(units * MICRO, weights)

    assert sum(parts) == units * MICRO
    assert all(p >= 0 and p % MICRO == 0 for p in parts)


# --- the invariant through costs_allocate on the real database, random fleets ------------

cluster_specs = st.fixed_dictionaries({
    "count": st.integers(1, 64),
    "unit_cost": st.integers(100_00, 60_000_00).map(lambda cents: Decimal(cents) / 100),
    "months": st.integers(12, 72),
    "watts": st.integers(100, 1500),
    "datacenter": st.integers(0, 1),
    "since": st.integers(-2, 6),  # hours from the range start; negative: already in service
    "until": st.one_of(st.none(), st.integers(3, 12)),
})
usage_specs = st.lists(st.fixed_dictionaries({
    "hour": st.integers(0, 7),
    "customer": st.sampled_from(["acme", "globex"]),
    "model": st.sampled_from(MODELS),
    "target": st.sampled_from(["c0", "c1", "c2", "", "", "gone"]),  # "": placed by deployment (or not)
    "region": st.sampled_from(["us-east", "eu-west"]),
    "service_tier": st.sampled_from(["standard", "batch", "priority"]),
    # uncached, cached, cache write, long cache write, audio in; text out, audio out, reasoning share
    "tokens": st.tuples(st.integers(0, 5_000_000), st.integers(0, 5_000_000), st.integers(0, 2_000_000),
                        st.integers(0, 1_000_000), st.integers(0, 1_000_000), st.integers(0, 2_000_000),
                        st.integers(0, 500_000), st.sampled_from([0, 1, 2, 4])),
}), max_size=14)
fleet_specs = st.fixed_dictionaries({
    "clusters": st.lists(cluster_specs, min_size=1, max_size=3),
    "pue": st.tuples(st.integers(100, 200), st.integers(100, 200)),
    "price_change_hour": st.one_of(st.none(), st.integers(1, 7)),
    "prices": st.tuples(st.integers(0, 3000), st.integers(0, 3000)),  # 1/10,000 USD per kWh
    "readings": st.lists(st.tuples(st.integers(0, 2), st.integers(0, 7), st.integers(0, 200_000)), max_size=8),
    "deploy_nano_on": st.lists(st.integers(0, 2), max_size=2, unique=True),
})
GROUPINGS = [(), ("cluster",), ("datacenter", "day"), ("vendor",), ("customer", "model_tier"), ("model", "cluster"),
             ("customer", "day", "datacenter")]


def fleet_build(spec, start):
    skus = [sku_make(f"sku-{i}", vendor=("NVIDIA", "AMD", "AWS")[i], unit_cost=f"{c['unit_cost']}",
                     months=c["months"], watts=c["watts"]) for i, c in enumerate(spec["clusters"])]
    datacenters = []
    for i, (name, region) in enumerate((("iad-1", "us-east"), ("ams-1", "eu-west"))):
        datacenter = datacenter_make(name, region=region, pue=f"{Decimal(spec['pue'][i]) / 100}",
                                     price=f"{Decimal(spec['prices'][0]) / 10_000}", since=start - 48 * HOUR)
        if spec["price_change_hour"] is not None and i == 0:
            PowerContract.objects.create(datacenter=datacenter, effective_from=start + spec["price_change_hour"] * HOUR,
                                         price_per_kwh=Decimal(spec["prices"][1]) / 10_000)
        datacenters.append(datacenter)
    clusters = [
        cluster_make(f"c{i}", datacenters[c["datacenter"]], skus[i], count=c["count"],
                     since=start + c["since"] * HOUR,
                     until=None if c["until"] is None or c["until"] <= c["since"] else start + c["until"] * HOUR)
        for i, c in enumerate(spec["clusters"])
    ]
    for index, hour, kwh in spec["readings"]:
        if index < len(clusters):
            PowerReading.objects.get_or_create(cluster=clusters[index], hour=start + hour * HOUR,
                                               defaults={"it_kwh": Decimal(kwh) / 100, "received_at": start})
    for index in spec["deploy_nano_on"]:  # on clusters in service or not: placement must skip the latter
        if index < len(clusters):
            Deployment.objects.create(model="gpt-5.4-nano", region=clusters[index].datacenter.region,
                                      cluster=clusters[index], share=Decimal("0.5"))
    return clusters


@pytest.mark.django_db
@given(fleet=fleet_specs, usage=usage_specs)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_allocated_plus_idle_is_the_fleet_cost_to_the_cent(catalog, fleet, usage):
    inventory_clear()
    list_prices_publish()
    start, end = T0, T0 + 8 * HOUR
    fleet_build(fleet, start)
    rolled = {}
    for u in usage:
        key = (u["customer"], u["model"], u["service_tier"], u["region"], u["target"], start + u["hour"] * HOUR)
        if key not in rolled:
            uncached, cached, write, write_long, audio_in, text_out, audio_out, reasoning_quarters = u["tokens"]
            rolled[key] = rollup(key[0], key[1], key[5], input_tokens=uncached + cached + write + write_long + audio_in,
                                 cached=cached, cache_write=write, cache_write_long=write_long, audio_input=audio_in,
                                 output=text_out + audio_out, audio_output=audio_out,
                                 reasoning=(text_out + audio_out) * reasoning_quarters // 4,
                                 cluster=key[4], region=key[3], service_tier=key[2])
    tokens_in = sum(r.input_tokens + r.output_tokens for r in rolled.values())
    expected_total = hand_fleet_cost(start, end)

    costs_allocate(start=start, end=end, as_of=end)

    for group_by in GROUPINGS:
        result = unit_economics(start=start, end=end, group_by=group_by)
        totals = result.totals
        allocated = sum((row.figures.cost for row in result.rows), Decimal(0))
        assert allocated == totals.cost
        assert allocated + totals.idle_cost == expected_total  # exact, in micro-dollars
        assert totals.hardware_cost_shown + totals.power_cost_shown + totals.idle_cost_shown \
            == totals.total_cost_shown  # and as shown, to the cent
        assert abs(totals.total_cost_shown - expected_total) <= Decimal("0.015")  # three figures, each rounded once
        assert totals.idle_cost_shown == totals.idle_cost.quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert sum(row.figures.tokens for row in result.rows) + result.unplaced_tokens == tokens_in
        assert result.hours_not_allocated == 0
        if set(group_by) <= {"cluster", "datacenter", "vendor", "day"}:
            for row in result.rows:
                f = row.figures
                assert f.hardware_cost_shown + f.power_cost_shown + f.idle_cost_shown == f.total_cost_shown
            assert sum(row.figures.idle_cost for row in result.rows) == totals.idle_cost


# --- month by month ----------------------------------------------------------------------


@pytest.fixture
def iad(db):
    """iad-1 (PUE 1.25, 0.10 USD/kWh) with iad-h100-a: 8 × 35,040.00 over 48 months = 8.00 an
    hour of hardware; 8 × 1000 W × 1.25 × 0.10 = 1.00 an hour of estimated power."""
    datacenter = datacenter_make("iad-1", pue="1.25", price="0.10")
    return cluster_make("iad-h100-a", datacenter, sku_make())


@pytest.mark.django_db
class TestClusterHourCost:
    def test_a_reading_replaces_the_board_power_estimate(self, iad):
        reading(iad, T0 + HOUR, "6.4")

        costs_allocate(start=T0, end=T0 + 2 * HOUR, as_of=T0 + 2 * HOUR)

        estimated, measured = ClusterHourCost.objects.filter(cluster=iad).order_by("hour")
        assert (estimated.power_estimated, estimated.it_kwh, estimated.energy_kwh, estimated.power_cost) == \
            (True, Decimal("8"), Decimal("10"), Decimal("1.00"))  # 8 × 1000 W; × PUE 1.25; × 0.10
        assert (measured.power_estimated, measured.it_kwh, measured.energy_kwh, measured.power_cost) == \
            (False, Decimal("6.4"), Decimal("8"), Decimal("0.80"))  # 6.4 kWh × 1.25 × 0.10
        assert estimated.hardware_cost == measured.hardware_cost == Decimal("8.00")

    def test_a_power_price_change_mid_month_applies_from_its_hour(self, iad):
        change_at = utc(2026, 3, 15)
        PowerContract.objects.create(datacenter=iad.datacenter, effective_from=change_at, price_per_kwh=Decimal("0.14"))

        costs_allocate(start=change_at - HOUR, end=change_at + HOUR, as_of=change_at + HOUR)

        before, after = ClusterHourCost.objects.filter(cluster=iad).order_by("hour")
        assert before.power_cost == Decimal("1.00")  # 10 kWh × 0.10
        assert after.power_cost == Decimal("1.40")  # 10 kWh × 0.14
        assert (before.power_cost, after.power_cost) == (hand_hour_cost(iad, before.hour)[1],
                                                          hand_hour_cost(iad, after.hour)[1])

    def test_no_cost_outside_the_service_window(self, catalog, iad):
        list_prices_publish()
        joins, leaves = utc(2026, 3, 10), utc(2026, 3, 20)
        late = cluster_make("iad-h200-a", iad.datacenter, sku_make("h200-sxm", unit_cost="70080.00"), count=4,
                            since=joins, until=leaves)
        for hour in (joins - HOUR, joins, leaves - HOUR, leaves):
            rollup("acme", "gpt-5.4", hour, input_tokens=1000, output=100, cluster="iad-h200-a", region="us-east")

        for hour in (joins - HOUR, joins, leaves - HOUR, leaves):
            costs_allocate(start=hour, end=hour + HOUR, as_of=leaves + HOUR)

        hours = list(ClusterHourCost.objects.filter(cluster=late).order_by("hour").values_list("hour", flat=True))
        assert hours == [joins, leaves - HOUR]
        # 4 × 70,080 / (48 × 730) = 8.00 an hour
        assert ClusterHourCost.objects.get(cluster=late, hour=joins).hardware_cost == Decimal("8.00")
        unplaced = UnplacedUsage.objects.filter(customer_id="acme").order_by("hour")
        assert [(u.hour, u.tokens) for u in unplaced] == [(joins - HOUR, 1100), (leaves, 1100)]
        month = unit_economics(start=utc(2026, 3, 1), end=utc(2026, 4, 1), group_by=["cluster"])
        by_cluster = {row.keys["cluster"]: row.figures for row in month.rows}
        assert by_cluster["iad-h200-a"].cluster_hours == 2 and by_cluster["iad-h200-a"].tokens == 2200
        assert month.unplaced_tokens == 2200


def allocation_row(customer_id: str) -> dict:
    return CostAllocation.objects.filter(customer_id=customer_id).values(
        *TOKEN_COLUMNS, "weighted_tokens", "hardware_cost", "power_cost").get()


@pytest.mark.django_db
class TestEveryTokenClass:
    """One hour of iad-h100-a (8.00 hardware + 1.00 estimated power, as in `iad`), on a SKU
    weighing each class apart: input 1, cached 0.1, cache write 1.5, long cache write 2.5,
    audio in 3, output 4, audio out 10. Worked by hand:
      acme    1,000,000 prompt = 400,000 uncached + 200,000 cached + 300,000 written + 100,000
              written for an hour; 50,000 output of which 20,000 reasoning
              → 400,000 + 20,000 + 450,000 + 250,000 + 200,000 = 1,320,000 weighted
      globex  500,000 prompt of which 200,000 audio; 120,000 output of which 60,000 audio
              → 300,000 + 600,000 + 240,000 + 600,000 = 1,740,000 weighted
      acme    nano, 740,000 prompt + 50,000 output → 740,000 + 200,000 = 940,000 weighted
    4,000,000 weighted in all: hardware 8.00 × w / 4M = 2 × w / 1M, power 1.00 × w / 4M."""

    WEIGHTS = {"weight_input": Decimal(1), "weight_cached_input": Decimal("0.1"), "weight_cache_write": Decimal("1.5"),
               "weight_cache_write_long": Decimal("2.5"), "weight_audio_input": Decimal(3),
               "weight_output": Decimal(4), "weight_audio_output": Decimal(10)}

    @staticmethod
    def usage(cluster: str):
        rollup("acme", "gpt-5.4", T0, input_tokens=1_000_000, cached=200_000, cache_write=300_000,
               cache_write_long=100_000, output=50_000, reasoning=20_000, cluster=cluster)
        rollup("globex", "gpt-5.4-mini", T0, input_tokens=500_000, audio_input=200_000, output=120_000,
               audio_output=60_000, cluster=cluster)
        rollup("acme", "gpt-5.4-nano", T0, input_tokens=740_000, output=50_000, cluster=cluster)

    def test_each_class_is_weighted_by_the_skus_weight(self, catalog):
        iad = cluster_make("iad-h100-a", datacenter_make("iad-1", pue="1.25", price="0.10"),
                           sku_make(**self.WEIGHTS))
        self.usage("iad-h100-a")

        costs_allocate(start=T0, end=T0 + HOUR, as_of=T0 + HOUR)

        rows = {(a.customer_id, a.model): a for a in CostAllocation.objects.filter(cluster=iad)}
        acme, globex, nano = rows[("acme", "gpt-5.4")], rows[("globex", "gpt-5.4-mini")], rows[("acme", "gpt-5.4-nano")]
        assert {c: getattr(acme, c) for c in TOKEN_COLUMNS} == {
            "input_tokens": 400_000, "cached_input_tokens": 200_000, "cache_write_tokens": 300_000,
            "cache_write_long_tokens": 100_000, "audio_input_tokens": 0, "output_tokens": 50_000,
            "audio_output_tokens": 0, "reasoning_tokens": 20_000}
        assert {c: getattr(globex, c) for c in TOKEN_COLUMNS} == {
            "input_tokens": 300_000, "cached_input_tokens": 0, "cache_write_tokens": 0, "cache_write_long_tokens": 0,
            "audio_input_tokens": 200_000, "output_tokens": 60_000, "audio_output_tokens": 60_000,
            "reasoning_tokens": 0}
        assert [(r.weighted_tokens, r.hardware_cost, r.power_cost) for r in (acme, globex, nano)] == [
            (Decimal(1_320_000), Decimal("2.64"), Decimal("0.33")),
            (Decimal(1_740_000), Decimal("3.48"), Decimal("0.435")),
            (Decimal(940_000), Decimal("1.88"), Decimal("0.235")),
        ]
        assert ClusterHourCost.objects.get(cluster=iad, hour=T0).weighted_tokens == Decimal(4_000_000)

    def test_a_sku_without_weights_takes_the_defaults(self, catalog):
        cluster_make("iad-h100-a", datacenter_make("iad-1"), sku_make())
        self.usage("iad-h100-a")

        costs_allocate(start=T0, end=T0 + HOUR, as_of=T0 + HOUR)

        weighted = dict(CostAllocation.objects.values_list("model", "weighted_tokens"))
        # defaults: input 1, cached 0.1, write 1.25, long write 2, audio in 2, output 4, audio out 8
        assert weighted == {
            "gpt-5.4": Decimal(400_000 + 20_000 + 375_000 + 200_000 + 200_000),
            "gpt-5.4-mini": Decimal(300_000 + 400_000 + 240_000 + 480_000),
            "gpt-5.4-nano": Decimal(740_000 + 200_000),
        }

    def test_placed_usage_keeps_every_class_and_reasoning_within_output(self, catalog, iad):
        other = cluster_make("iad-h100-b", iad.datacenter, iad.sku)
        for cluster, share in ((iad, "0.3333"), (other, "0.6667")):
            Deployment.objects.create(model="gpt-5.4", region="us-east", cluster=cluster, share=Decimal(share))
        rollup("acme", "gpt-5.4", T0, input_tokens=1001, cached=301, cache_write=101, cache_write_long=51,
               audio_input=11, output=777, audio_output=7, reasoning=777, region="us-east")

        costs_allocate(start=T0, end=T0 + HOUR, as_of=T0 + HOUR)

        parts = list(CostAllocation.objects.values(*TOKEN_COLUMNS))
        assert {c: sum(p[c] for p in parts) for c in TOKEN_COLUMNS} == {
            "input_tokens": 537, "cached_input_tokens": 301, "cache_write_tokens": 101,
            "cache_write_long_tokens": 51, "audio_input_tokens": 11, "output_tokens": 770,
            "audio_output_tokens": 7, "reasoning_tokens": 777}
        assert all(p["reasoning_tokens"] <= p["output_tokens"] + p["audio_output_tokens"] for p in parts)
        assert UnplacedUsage.objects.count() == 0

    def test_unplaced_usage_counts_every_token(self, catalog, iad):
        rollup("acme", "gpt-5.4", T0, input_tokens=1000, cached=100, cache_write=200, audio_input=50, output=300,
               audio_output=30, reasoning=100, region="sa-east")

        costs_allocate(start=T0, end=T0 + HOUR, as_of=T0 + HOUR)

        assert UnplacedUsage.objects.get(customer_id="acme").tokens == 1300


def _rollup_fields(parts: tuple[int, ...]) -> dict:
    """A valid rollup's sums of token_classes.FIELDS from its disjoint parts."""
    uncached, cached, write, write_long, audio_in, text_out, audio_out, reasoning = parts
    return {"input_tokens": uncached + cached + write + write_long + audio_in, "cached_input_tokens": cached,
            "output_tokens": text_out + audio_out, "cache_write_tokens": write, "cache_write_long_tokens": write_long,
            "audio_input_tokens": audio_in, "audio_output_tokens": audio_out,
            "reasoning_tokens": min(reasoning, text_out + audio_out)}


rollup_fields = st.tuples(*[st.integers(0, 10**9)] * 8).map(_rollup_fields)


@pytest.mark.django_db
@given(fields=rollup_fields)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_allocations_sql_prices_the_classes_as_the_ledger_does(fields):
    HourlyRollup.objects.filter(hour=T0).delete()
    HourlyRollup.objects.create(customer_id="acme", model="gpt-5.4", service_tier="standard", region="", cluster="",
                                hour=T0, events=1, **fields)

    with connection.cursor() as cursor:
        cursor.execute(USAGE_SQL, [T0, T0 + HOUR])
        [row] = cursor.fetchall()

    assert dict(zip((*TOKEN_CLASSES, "reasoning"), row[7:])) == token_classes.priced(fields) | {
        "reasoning": fields["reasoning_tokens"]}


@pytest.mark.django_db
class TestLateData:
    def test_late_event_and_late_reading_reallocate_only_their_hours(self, catalog, iad):
        list_prices_publish()
        start, end = T0, T0 + 6 * HOUR
        first_run = utc_now()  # after the inventory was written (hours_stale compares its updated_at)
        second_run = first_run + 4 * HOUR
        for n in range(6):
            rollup("acme", "gpt-5.4", start + n * HOUR, input_tokens=1_000_000, output=250_000, cluster="iad-h100-a")
        costs_allocate(start=start, end=end, as_of=first_run)
        before = {c.hour: c.pk for c in ClusterHourCost.objects.filter(cluster=iad)}
        assert hours_stale(start=start, end=end) == []

        late = HourlyRollup.objects.get(hour=start + 2 * HOUR)
        late.events, late.input_tokens = late.events + 1, late.input_tokens + 500
        late.save()
        rollup("globex", "gpt-5.4-nano", start + 2 * HOUR, input_tokens=2_000_000, cluster="iad-h100-a")
        reading(iad, start + 4 * HOUR, "6.4", received_at=second_run - HOUR)

        assert hours_stale(start=start, end=end) == [start + 2 * HOUR, start + 4 * HOUR]
        redone = costs_allocate_stale(start=start, end=end, as_of=second_run)

        assert redone == [start + 2 * HOUR, start + 4 * HOUR]
        after = {c.hour: c.pk for c in ClusterHourCost.objects.filter(cluster=iad)}
        kept = {h for h in before if h not in redone}
        assert {h: after[h] for h in kept} == {h: before[h] for h in kept}
        assert all(after[h] != before[h] for h in redone)
        allocated_at = dict(AllocatedHour.objects.filter(hour__gte=start, hour__lt=end)
                            .values_list("hour", "allocated_at"))
        assert {h for h, at in allocated_at.items() if at == second_run} == set(redone)
        assert ClusterHourCost.objects.get(cluster=iad, hour=start + 4 * HOUR).power_cost == Decimal("0.80")
        shares = CostAllocation.objects.filter(hour=start + 2 * HOUR).order_by("customer_id")
        assert [s.customer_id for s in shares] == ["acme", "globex"]
        assert sum(s.hardware_cost + s.power_cost for s in shares) == Decimal("9.00")

        assert costs_allocate_stale(start=start, end=end, as_of=second_run + HOUR) == []
        assert {c.hour: c.pk for c in ClusterHourCost.objects.filter(cluster=iad)} == after


@pytest.mark.django_db
def test_placement_skips_a_deployed_cluster_out_of_service(catalog, iad):
    list_prices_publish()
    later = cluster_make("iad-b200-a", iad.datacenter, sku_make("b200"), since=T0 + 24 * HOUR)
    for cluster in (iad, later):
        Deployment.objects.create(model="gpt-5.4-nano", region="us-east", cluster=cluster, share=Decimal("0.5"))
    rollup("acme", "gpt-5.4-nano", T0, input_tokens=1000, output=10, region="us-east")

    costs_allocate(start=T0, end=T0 + HOUR, as_of=T0 + HOUR)

    result = unit_economics(start=T0, end=T0 + HOUR, group_by=["cluster"])
    assert [(row.keys["cluster"], row.figures.tokens) for row in result.rows] == [("iad-h100-a", 1010)]
    assert result.unplaced_tokens == 0

    def test_an_adjustment_after_allocation_reallocates_its_hour(self, catalog, iad):
        from tests.billing.test_rerating import SERVED, adjust, served, tokens
        from tests.metering.factories import event

        list_prices_publish()
        body = event(**tokens(1_000_000, 10_000))
        served(body, event(customer_id="globex", **tokens(1_000_000, 10_000)))
        costs_allocate(start=SERVED, end=SERVED + HOUR, as_of=SERVED + 2 * HOUR)
        before = dict(CostAllocation.objects.filter(hour=SERVED).values_list("customer_id", "hardware_cost"))

        adjust(body, "adj-alloc", replacement=tokens(3_000_000, 30_000))  # recorded after the allocation
        stale = hours_stale(start=SERVED, end=SERVED + HOUR)
        costs_allocate_stale(start=SERVED, end=SERVED + HOUR, as_of=SERVED + 30 * 24 * HOUR)

        after = dict(CostAllocation.objects.filter(hour=SERVED).values_list("customer_id", "hardware_cost"))
        assert stale == [SERVED]
        assert before["acme"] == before["globex"]
        assert abs(after["acme"] - 3 * after["globex"]) <= Decimal("0.000004")  # micro-dollars, largest remainder
        assert after["acme"] + after["globex"] == before["acme"] + before["globex"]
        assert hours_stale(start=SERVED, end=SERVED + HOUR) == []
