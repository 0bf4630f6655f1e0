"""Leased clusters, rented clusters and carbon in the cost allocation (DESIGN.md §4), worked
out by hand, and the invariant allocated + idle + reserved idle = total over random fleets
that mix owned and leased clusters, leases missing for some hours, and rentals."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Rental
from infra_inventory.allocation import MICRO
from infra_inventory.models import (
    Cluster, ClusterHourCost, CostAllocation, Deployment, GridIntensity, Lease, UnplacedUsage, UnpricedClusterHour,
)
from infra_inventory.selectors import unit_economics
from infra_inventory.services import costs_allocate, hours_stale
from billing.services.capacity import rental_create
from metering.services import utc_now
from tests.infra_inventory.test_allocation import (
    GROUPINGS, cluster_make, datacenter_make, fleet_build, fleet_specs, hand_hour_cost, inventory_clear,
    list_prices_publish, rollup, sku_make, usage_specs,
)

HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def lease_make(cluster, *, price, since=T0 - 48 * HOUR, includes_power=False, provider="CoreWeave"):
    return Lease.objects.create(cluster=cluster, provider=provider, effective_from=since,
                                price_per_accelerator_hour=Decimal(price), includes_power=includes_power)


def rental_make(cluster, customer_id, start, end):
    """Through billing's own service, as finance rents a cluster."""
    return rental_create(customer_id=customer_id, cluster=cluster.name, accelerator_hour_price=Decimal("4.00"),
                         starts_at=start, ends_at=end, actor="test", as_of=start)


def allocations_of(cluster, hour):
    return {(a.customer_id, a.model, a.reserved_idle): (a.hardware_cost, a.power_cost)
            for a in CostAllocation.objects.filter(cluster=cluster, hour=hour)}


@pytest.fixture
def mixed(catalog):
    """iad-1 (PUE 1.25, 0.10 USD/kWh): iad-h100-a owned, 8 × 35,040.00 over 48 months = 8.00 an hour,
    8 kWh IT × 1.25 × 0.10 = 1.00 of power.
    cw-1 (PUE 1.10, 0.20 USD/kWh): cw-h100-a leased, 4 accelerators at 2.10 an accelerator-hour without
    power (8.40 + 4 kWh × 1.10 × 0.20 = 0.88), from T0 + 1 h at 2.50 with power (10.00 + 0);
    cw-h100-b leased, 2 accelerators, its lease starts only at T0 + 1 h (1.50, with power).
    T0:      acme 1,000,000 input + 250,000 output (weighted 2,000,000) and globex 1,000,000 input
             (weighted 1,000,000) on iad; acme 1,000,000 input on cw-h100-a; globex 500,000 input on
             cw-h100-b (no lease in force: unpriced).
    T0 + 1h: nothing anywhere: idle."""
    list_prices_publish()
    sku = sku_make()
    iad = cluster_make("iad-h100-a", datacenter_make("iad-1"), sku)
    cw_dc = datacenter_make("cw-1", region="us-east", pue="1.10", price="0.20")
    cw_a = cluster_make("cw-h100-a", cw_dc, sku, count=4)
    cw_b = cluster_make("cw-h100-b", cw_dc, sku, count=2)
    Cluster.objects.filter(pk__in=[cw_a.pk, cw_b.pk]).update(ownership="leased")
    lease_make(cw_a, price="2.10")
    lease_make(cw_a, price="2.50", since=T0 + HOUR, includes_power=True)
    lease_make(cw_b, price="1.50", since=T0 + HOUR, includes_power=True, provider="AWS")
    rollup("acme", "gpt-5.4", T0, input_tokens=1_000_000, output=250_000, cluster="iad-h100-a")
    rollup("globex", "gpt-5.4-nano", T0, input_tokens=1_000_000, cluster="iad-h100-a")
    rollup("acme", "gpt-5.4", T0, input_tokens=1_000_000, cluster="cw-h100-a")
    rollup("globex", "gpt-5.4-nano", T0, input_tokens=500_000, cluster="cw-h100-b")
    # allocated after the inventory was written (its updated_at is the clock's): nothing stale
    summary = costs_allocate(start=T0, end=T0 + 2 * HOUR, as_of=utc_now())
    return iad, cw_a, cw_b, summary


@pytest.mark.django_db
class TestLeasedClusters:
    def test_owned_and_leased_cluster_hours_to_the_micro_dollar(self, mixed):
        iad, cw_a, _, _ = mixed

        owned = ClusterHourCost.objects.get(cluster=iad, hour=T0)
        leased = ClusterHourCost.objects.get(cluster=cw_a, hour=T0)
        leased_later = ClusterHourCost.objects.get(cluster=cw_a, hour=T0 + HOUR)

        assert (owned.hardware_cost, owned.power_cost) == (Decimal("8.000000"), Decimal("1.000000"))
        assert (leased.hardware_cost, leased.power_cost) == (Decimal("8.400000"), Decimal("0.880000"))
        assert leased.energy_kwh == Decimal("4.400000")
        # the later lease, with power included: 4 × 2.50, no power term, energy still counted
        assert (leased_later.hardware_cost, leased_later.power_cost) == (Decimal("10.000000"), Decimal("0"))
        assert leased_later.energy_kwh == Decimal("4.400000")

    def test_shares_by_largest_remainder_on_owned_and_all_to_the_one_user_on_leased(self, mixed):
        iad, cw_a, _, _ = mixed

        # 8.00 split 2 : 1 is 5.333333⅓ / 2.666666⅔: the leftover micro-dollar goes to globex's
        # larger remainder; 1.00 split 2 : 1 gives it to acme.
        assert allocations_of(iad, T0) == {
            ("acme", "gpt-5.4", False): (Decimal("5.333333"), Decimal("0.666667")),
            ("globex", "gpt-5.4-nano", False): (Decimal("2.666667"), Decimal("0.333333")),
        }
        assert allocations_of(cw_a, T0) == {("acme", "gpt-5.4", False): (Decimal("8.400000"), Decimal("0.880000"))}

    def test_a_leased_cluster_without_a_lease_is_reported_not_priced_at_zero(self, mixed):
        _, _, cw_b, summary = mixed

        unpriced = UnpricedClusterHour.objects.get(cluster=cw_b)
        result = unit_economics(start=T0, end=T0 + 2 * HOUR, group_by=("cluster",))

        assert (unpriced.hour, unpriced.tokens, unpriced.reason) == (T0, 500_000, "no_lease_in_force")
        assert not ClusterHourCost.objects.filter(cluster=cw_b, hour=T0).exists()
        assert not CostAllocation.objects.filter(cluster=cw_b).exists()
        assert ClusterHourCost.objects.get(cluster=cw_b, hour=T0 + HOUR).hardware_cost == Decimal("3.000000")
        assert (summary.unpriced_cluster_hours, summary.unpriced_tokens) == (1, 500_000)
        assert (result.unpriced_cluster_hours, result.unpriced_tokens) == (1, 500_000)
        assert result.unplaced_tokens == 0

    def test_a_lease_added_later_makes_the_unpriced_hour_stale(self, mixed):
        _, _, cw_b, _ = mixed
        assert hours_stale(start=T0, end=T0 + 2 * HOUR) == []

        lease_make(cw_b, price="1.20", since=T0 - HOUR, provider="AWS")

        assert hours_stale(start=T0, end=T0 + 2 * HOUR) == [T0]

    def test_unit_economics_by_ownership_side_by_side(self, mixed):
        result = unit_economics(start=T0, end=T0 + 2 * HOUR, group_by=("ownership",))

        rows = {row.keys["ownership"]: row.figures for row in result.rows}
        owned, leased = rows["owned"], rows["leased"]
        # owned: 9.00 allocated at T0 over 2,250,000 tokens, 9.00 idle at T0 + 1 h
        assert (owned.cost, owned.idle_cost, owned.tokens) == (Decimal("9.000000"), Decimal("9.000000"), 2_250_000)
        assert owned.cost_per_million_tokens == Decimal("4.000000")
        # leased: 9.28 allocated over 1,000,000 tokens; idle 10.00 (cw-a) + 3.00 (cw-b) at T0 + 1 h
        assert (leased.cost, leased.idle_cost, leased.tokens) == (Decimal("9.280000"), Decimal("13.000000"),
                                                                  1_000_000)
        assert leased.cost_per_million_tokens == Decimal("9.280000")

    def test_the_api_groups_by_ownership_and_reports_unpriced_usage(self, mixed, api_client_for):
        response = api_client_for("admin").get("/api/v1/unit-economics", {
            "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T12:00:00Z", "group_by": "ownership"})

        assert response.status_code == 200, response.json()
        body = response.json()
        rows = {row["ownership"]: row for row in body["results"]}
        assert (rows["owned"]["cost_per_million_tokens"], rows["leased"]["cost_per_million_tokens"]) == \
            ("4.00", "9.28")
        assert (rows["leased"]["idle_cost"], rows["leased"]["total_cost"]) == ("13.00", "22.28")
        assert body["unpriced_tokens"] == 500_000 and body["totals"]["unpriced_cluster_hours"] == 1


@pytest.fixture
def rented(catalog):
    """iad-h100-r (owned, 8.00 + 1.00 an hour) rented to acme over [T0, T0 + 2 h).
    T0:      acme 1,000,000 input (the whole 9.00 is acme's), globex 300,000 input (refused).
    T0 + 1h: nothing: 9.00 of acme's reserved idle.
    T0 + 2h: after the rental, nothing: 9.00 of fleet idle."""
    list_prices_publish()
    cluster = cluster_make("iad-h100-r", datacenter_make("iad-1"), sku_make())
    rental_make(cluster, "acme", T0, T0 + 2 * HOUR)
    rollup("acme", "gpt-5.4", T0, input_tokens=1_000_000, cluster="iad-h100-r")
    rollup("globex", "gpt-5.4-nano", T0, input_tokens=300_000, cluster="iad-h100-r")
    costs_allocate(start=T0, end=T0 + 3 * HOUR, as_of=T0 + 3 * HOUR)
    return cluster


@pytest.mark.django_db
class TestRentedClusters:
    def test_the_renters_usage_bears_the_whole_hour_and_its_idle_hour_is_reserved_idle(self, rented):
        assert allocations_of(rented, T0) == {("acme", "gpt-5.4", False): (Decimal("8.000000"), Decimal("1.000000"))}
        assert allocations_of(rented, T0 + HOUR) == {("acme", "", True): (Decimal("8.000000"), Decimal("1.000000"))}
        assert allocations_of(rented, T0 + 2 * HOUR) == {}
        assert [c.rented_to for c in ClusterHourCost.objects.filter(cluster=rented).order_by("hour")] == \
            ["acme", "acme", ""]

    def test_another_customers_usage_on_the_rented_cluster_is_a_placement_error(self, rented):
        refused = UnplacedUsage.objects.get(customer_id="globex", hour=T0)

        assert (refused.reason, refused.cluster, refused.tokens) == ("rented_to_other_customer", "iad-h100-r", 300_000)
        assert not CostAllocation.objects.filter(cluster=rented, customer_id="globex").exists()

    def test_totals_keep_reserved_idle_apart_from_fleet_idle(self, rented):
        result = unit_economics(start=T0, end=T0 + 3 * HOUR, group_by=())
        totals = result.totals

        assert (totals.cost, totals.reserved_idle_cost, totals.idle_cost) == \
            (Decimal("9.000000"), Decimal("9.000000"), Decimal("9.000000"))
        assert totals.total_cost_shown == Decimal("27.00")
        assert (result.unplaced_tokens, result.refused_tokens) == (300_000, 300_000)

    def test_grouped_by_customer_the_reserved_idle_is_the_renters(self, rented):
        result = unit_economics(start=T0, end=T0 + 3 * HOUR, group_by=("customer",))

        rows = {row.keys["customer"]: row.figures for row in result.rows}
        assert set(rows) == {"acme"}
        assert (rows["acme"].cost, rows["acme"].reserved_idle_cost) == (Decimal("9.000000"), Decimal("9.000000"))

    def test_grouped_by_model_the_reserved_idle_is_in_the_totals_only(self, rented):
        result = unit_economics(start=T0, end=T0 + 3 * HOUR, group_by=("model",))

        assert [row.keys["model"] for row in result.rows] == ["gpt-5.4"]
        assert result.rows[0].figures.reserved_idle_cost == 0
        assert result.totals.reserved_idle_cost == Decimal("9.000000")

    def test_the_api_shows_reserved_idle_next_to_idle(self, rented, api_client_for):
        client = api_client_for("admin")
        window = {"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T13:00:00Z"}

        by_customer = client.get("/api/v1/unit-economics", {**window, "group_by": "customer"}).json()
        by_model = client.get("/api/v1/unit-economics", {**window, "group_by": "model"}).json()

        assert (by_customer["idle_cost"], by_customer["reserved_idle_cost"]) == ("9.00", "9.00")
        assert by_customer["results"][0]["reserved_idle_cost"] == "9.00"
        assert by_model["results"][0]["reserved_idle_cost"] is None
        assert by_model["totals"]["total_cost"] == "27.00" and by_model["totals"]["refused_tokens"] == 300_000


@pytest.mark.django_db
def test_usage_without_a_cluster_is_placed_off_clusters_rented_to_others(catalog):
    """gpt-5.4-nano in us-east is deployed half on iad-h100-r (rented to acme) and half on
    iad-h100-s: globex's untagged usage all goes to iad-h100-s, acme's is split as deployed."""
    list_prices_publish()
    datacenter, sku = datacenter_make("iad-1"), sku_make()
    rented_cluster, shared = cluster_make("iad-h100-r", datacenter, sku), cluster_make("iad-h100-s", datacenter, sku)
    for cluster in (rented_cluster, shared):
        Deployment.objects.create(model="gpt-5.4-nano", region="us-east", cluster=cluster, share=Decimal("0.5"))
    rental_make(rented_cluster, "acme", T0, T0 + HOUR)
    rollup("globex", "gpt-5.4-nano", T0, input_tokens=1_000_000, region="us-east")
    rollup("acme", "gpt-5.4-nano", T0, input_tokens=1_000_000, region="us-east")

    costs_allocate(start=T0, end=T0 + HOUR, as_of=T0 + HOUR)

    placed = {(a.cluster.name, a.customer_id): a.input_tokens for a in CostAllocation.objects.filter(hour=T0)}
    assert placed == {("iad-h100-s", "globex"): 1_000_000, ("iad-h100-s", "acme"): 500_000,
                      ("iad-h100-r", "acme"): 500_000}
    assert not UnplacedUsage.objects.filter(hour=T0).exists()


# --- the invariant over random fleets with leases and rentals -------------------------------

lease_specs = st.lists(st.fixed_dictionaries({
    "leased": st.booleans(),
    "lease_from": st.one_of(st.none(), st.integers(-3, 5)),  # None: no lease at all; > 0: unpriced until then
    "price": st.integers(0, 800_000).map(lambda n: Decimal(n) / 100_000),
    "includes_power": st.booleans(),
    # who, hours after the later of the range start and the cluster's service start, length
    "rental": st.one_of(st.none(), st.tuples(st.sampled_from(["acme", "globex"]), st.integers(0, 3),
                                             st.integers(1, 6)), st.tuples(st.just("acme"), st.just(0), st.just(8))),
}), min_size=3, max_size=3)


def hand_cost(cluster, hour, leases) -> tuple[Decimal, Decimal] | None:
    """DESIGN.md §4 by hand, leased clusters included; None: leased, no lease in force."""
    if cluster.ownership == "owned":
        return hand_hour_cost(cluster, hour)
    in_force = [lease for lease in leases if lease.cluster_id == cluster.pk and lease.effective_from <= hour]
    if not in_force:
        return None
    lease = max(in_force, key=lambda lease: lease.effective_from)
    _, power = hand_hour_cost(cluster, hour)
    hardware = (cluster.accelerator_count * lease.price_per_accelerator_hour).quantize(MICRO, ROUND_HALF_UP)
    return hardware, Decimal(0) if lease.includes_power else power


def rentals_clear():
    for model in (Rental, Lease, GridIntensity, UnpricedClusterHour):
        model.objects.all().delete()
    inventory_clear()


@pytest.mark.django_db
@given(fleet=fleet_specs, usage=usage_specs, leases=lease_specs)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_allocated_plus_idle_plus_reserved_idle_is_the_fleet_cost(catalog, fleet, usage, leases):
    rentals_clear()
    list_prices_publish()
    start, end = T0, T0 + 8 * HOUR
    clusters = fleet_build(fleet, start)
    rentals = []
    for cluster, spec in zip(clusters, leases):
        if spec["leased"]:
            Cluster.objects.filter(pk=cluster.pk).update(ownership="leased")
            cluster.ownership = "leased"
            if spec["lease_from"] is not None:
                lease_make(cluster, price=spec["price"], since=start + spec["lease_from"] * HOUR,
                           includes_power=spec["includes_power"])
        if spec["rental"] is not None:
            customer_id, offset, length = spec["rental"]
            begin = max(start, cluster.in_service_from) + offset * HOUR
            until = begin + length * HOUR
            if cluster.in_service_to is not None:
                until = min(until, cluster.in_service_to)
            if until > begin:
                rentals.append(rental_make(cluster, customer_id, begin, until))
    rolled = {}
    for u in usage:
        key = (u["customer"], u["model"], u["region"], u["target"], start + u["hour"] * HOUR)
        if key not in rolled:
            uncached, cached, *_ = u["tokens"]
            rolled[key] = rollup(key[0], key[1], key[4], input_tokens=uncached + cached, cached=cached,
                                 output=u["tokens"][5], cluster=key[3], region=key[2])
    tokens_in = sum(r.input_tokens + r.output_tokens for r in rolled.values())
    all_leases = list(Lease.objects.all())
    expected_total, expected_unpriced, hour = Decimal(0), 0, start
    while hour < end:
        for cluster in Cluster.objects.select_related("sku", "datacenter"):
            if cluster.in_service(hour):
                cost = hand_cost(cluster, hour, all_leases)
                if cost is None:
                    expected_unpriced += 1
                else:
                    expected_total += sum(cost)
        hour += HOUR

    costs_allocate(start=start, end=end, as_of=end)

    for group_by in [*GROUPINGS, ("ownership",), ("customer", "ownership")]:
        result = unit_economics(start=start, end=end, group_by=group_by)
        totals = result.totals
        allocated = sum((row.figures.cost for row in result.rows), Decimal(0))
        assert allocated == totals.cost
        assert allocated + totals.idle_cost + totals.reserved_idle_cost == expected_total  # exact, micro-dollars
        assert totals.idle_cost >= 0 and totals.reserved_idle_cost >= 0
        assert totals.hardware_cost_shown + totals.power_cost_shown + totals.idle_cost_shown \
            + totals.reserved_idle_cost_shown == totals.total_cost_shown
        assert sum(row.figures.tokens for row in result.rows) + result.unplaced_tokens + result.unpriced_tokens \
            == tokens_in
        assert result.unpriced_cluster_hours == expected_unpriced
    for rental in rentals:  # in its hours a rented cluster's cost is its renter's alone
        in_term = CostAllocation.objects.filter(cluster=rental.cluster, hour__gte=rental.starts_at,
                                                hour__lt=rental.ends_at)
        assert not in_term.exclude(customer_id=rental.customer.customer_id).exists()
        assert not CostAllocation.objects.filter(reserved_idle=True, cluster=rental.cluster).exclude(
            hour__gte=rental.starts_at, hour__lt=rental.ends_at).exists()
        for hour_cost in ClusterHourCost.objects.filter(cluster=rental.cluster, hour__gte=rental.starts_at,
                                                        hour__lt=rental.ends_at):  # no fleet idle in a rented hour
            shares = in_term.filter(hour=hour_cost.hour)
            assert sum(a.hardware_cost + a.power_cost for a in shares) == hour_cost.hardware_cost + hour_cost.power_cost
            assert sum(a.emissions_kg_co2e for a in shares) == hour_cost.emissions_kg_co2e


# --- carbon: emissions against an independent computation ---------------------------------


@pytest.fixture
def carbon(catalog):
    """iad-h100-a (8 × 1000 W, PUE 1.25: 10 kWh an hour, estimated) in iad-1 at 380 gCO2e/kWh
    from T0 − 48 h, 200 from T0 + 1 h; the SKU embodies 2,190 kgCO2e per accelerator over 48 months.
    T0: acme 1,000,000 input + 250,000 output, globex 1,000,000 input (2 : 1 by weight)."""
    list_prices_publish()
    datacenter = datacenter_make("iad-1")
    cluster = cluster_make("iad-h100-a", datacenter, sku_make(embodied_kg_co2e=Decimal("2190")))
    GridIntensity.objects.create(datacenter=datacenter, effective_from=T0 - 48 * HOUR, g_co2e_per_kwh=Decimal(380))
    GridIntensity.objects.create(datacenter=datacenter, effective_from=T0 + HOUR, g_co2e_per_kwh=Decimal(200))
    rollup("acme", "gpt-5.4", T0, input_tokens=1_000_000, output=250_000, cluster="iad-h100-a")
    rollup("globex", "gpt-5.4-nano", T0, input_tokens=1_000_000, cluster="iad-h100-a")
    costs_allocate(start=T0, end=T0 + 2 * HOUR, as_of=T0 + 2 * HOUR)
    return cluster


def sci_kg(*, kwh: Fraction, g_per_kwh: int, accelerators: int, embodied_kg: int, months: int) -> Fraction:
    """SCI's (E × I) + M for one hour, in exact fractions: E × I in grams, M the hour's share."""
    return kwh * g_per_kwh / 1000 + Fraction(accelerators * embodied_kg, months * 730)


@pytest.mark.django_db
class TestEmissions:
    def test_cluster_hour_emissions_are_grid_plus_embodied(self, carbon):
        at_380 = sci_kg(kwh=Fraction(10), g_per_kwh=380, accelerators=8, embodied_kg=2190, months=48)
        at_200 = sci_kg(kwh=Fraction(10), g_per_kwh=200, accelerators=8, embodied_kg=2190, months=48)

        hours = {c.hour: c.emissions_kg_co2e for c in ClusterHourCost.objects.filter(cluster=carbon)}

        assert (at_380, at_200) == (Fraction("4.3"), Fraction("2.5"))
        assert hours == {T0: Decimal("4.300000"), T0 + HOUR: Decimal("2.500000")}

    def test_emissions_follow_the_cost_shares_exactly_in_milligrams(self, carbon):
        total_mg = 4_300_000
        exact = {"acme": Fraction(total_mg * 2, 3), "globex": Fraction(total_mg, 3)}

        shares = {a.customer_id: a.emissions_kg_co2e for a in CostAllocation.objects.filter(cluster=carbon, hour=T0)}

        assert sum(shares.values()) == Decimal("4.300000")
        for customer, share in shares.items():
            assert abs(Fraction(share) * 1_000_000 - exact[customer]) < 1  # within a milligram of the exact share
        assert shares == {"acme": Decimal("2.866667"), "globex": Decimal("1.433333")}

    def test_unit_economics_rows_carry_emissions_and_grams_per_million_tokens(self, carbon, api_client_for):
        response = api_client_for("admin").get("/api/v1/unit-economics", {
            "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T12:00:00Z", "group_by": "customer"})

        body = response.json()
        rows = {row["customer"]: row for row in body["results"]}
        # acme: 2.866667 kg over 1,250,000 tokens = 2,293.3336 g per 1M tokens
        assert (rows["acme"]["emissions_kg_co2e"], rows["acme"]["g_co2e_per_million_tokens"]) == ("2.867", "2293.334")
        assert (rows["globex"]["emissions_kg_co2e"], rows["globex"]["g_co2e_per_million_tokens"]) == \
            ("1.433", "1433.333")
        assert (body["totals"]["total_emissions_kg_co2e"], body["totals"]["idle_emissions_kg_co2e"]) == \
            ("6.800", "2.500")

    def test_the_focus_export_carries_emissions_that_sum_to_the_totals(self, carbon, api_client_for):
        response = api_client_for("admin").get("/api/v1/exports/focus", {
            "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T12:00:00Z"}, HTTP_ACCEPT="text/csv")

        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert len(rows) == 1
        row = rows[0]
        assert (row["x_EmissionsKgCo2e"], row["x_AllocatedEmissionsKgCo2e"], row["x_IdleEmissionsKgCo2e"]) == \
            ("6.800000", "4.300000", "2.500000")
        assert row["x_Ownership"] == "owned" and row["x_ReservedIdleCost"] == "0.000000"
