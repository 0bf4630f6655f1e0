"""Unit economics' revenue as billed (DESIGN.md §2–§4): usage a renter reports from its rented
cluster earns nothing again, reservations and rentals earn their capacity lines, and a
month's revenue per customer is what its invoice bills before the discount."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.selectors import period_rate
from billing.services.capacity import rental_create, reservation_put
from infra_inventory.models import Cluster, Deployment, Lease
from infra_inventory.selectors import unit_economics
from infra_inventory.services import costs_allocate
from tests.infra_inventory.test_allocation import cluster_make, datacenter_make, list_prices_publish, rollup, sku_make

HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
RANGE = (T0, T0 + 6 * HOUR)
MARCH, APRIL = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def usd(text: str) -> Decimal:
    return Decimal(text)


@pytest.fixture
def rented(catalog):
    """iad-h100-a, owned, in iad-1: 8 × 35,040.00 / (48 × 730) = 8.00 + 1.00 power an hour.
    cw-h100-a, leased, in cw-1: 4 accelerators at 2.00 an accelerator-hour, power included: 8.00.
    Capacity:
      globex rents cw-h100-a over [T0, T0 + 4 h) at 3.00 an accelerator-hour;
      acme reserves 2 frontier units at 5.00 a unit-hour from T0 + 2 h, open (not pinned);
      globex reserves 1 nano unit at 1.25 a unit-hour over [T0, T0 + 6 h), pinned to iad-h100-a.
    Usage (list prices: frontier input 2.50, output 15.00; nano input 0.20; provisioned 0):
      T0       acme frontier 1,000,000 in + 200,000 out on iad-h100-a        2.50 + 3.00 = 5.50
               globex frontier 1,000,000 in + 100,000 out on cw-h100-a       covered by the rental: 0
      T0 + 1h  globex nano 1,000,000 in, untagged: the deployment map places it on cw-h100-a;
               not reported from the rented cluster, so billed per token      0.20
      T0 + 2h  acme frontier provisioned 2,000,000 in on iad-h100-a          0.00
      T0 + 4h  globex frontier 1,000,000 in on cw-h100-a, the rental over    2.50"""
    list_prices_publish()
    sku = sku_make()
    iad = cluster_make("iad-h100-a", datacenter_make("iad-1"), sku)
    cw = cluster_make("cw-h100-a", datacenter_make("cw-1", price=None), sku, count=4)
    Cluster.objects.filter(pk=cw.pk).update(ownership=Cluster.Ownership.LEASED)
    Lease.objects.create(cluster=cw, provider="CoreWeave", effective_from=MARCH, price_per_accelerator_hour=usd("2.00"),
                         includes_power=True)
    Deployment.objects.create(model="gpt-5.4-nano", region="us-east", cluster=cw, share=Decimal(1))
    rental_create(customer_id="globex", cluster="cw-h100-a", accelerator_hour_price=usd("3.00"), starts_at=T0,
                  ends_at=T0 + 4 * HOUR, actor="test", as_of=MARCH)
    reservation_put(customer_id="acme", model_tier="frontier", units=2, unit_hour_price=usd("5.00"),
                    starts_at=T0 + 2 * HOUR, ends_at=None, cluster=None, actor="test", as_of=MARCH)
    reservation_put(customer_id="globex", model_tier="nano", units=1, unit_hour_price=usd("1.25"), starts_at=T0,
                    ends_at=T0 + 6 * HOUR, cluster="iad-h100-a", actor="test", as_of=MARCH)
    rollup("acme", "gpt-5.4", T0, input_tokens=1_000_000, output=200_000, cluster="iad-h100-a", region="us-east")
    rollup("globex", "gpt-5.4", T0, input_tokens=1_000_000, output=100_000, cluster="cw-h100-a", region="us-east")
    rollup("globex", "gpt-5.4-nano", T0 + HOUR, input_tokens=1_000_000, region="us-east")
    rollup("acme", "gpt-5.4", T0 + 2 * HOUR, input_tokens=2_000_000, cluster="iad-h100-a", region="us-east",
           service_tier="provisioned")
    rollup("globex", "gpt-5.4", T0 + 4 * HOUR, input_tokens=1_000_000, cluster="cw-h100-a", region="us-east")
    return iad, cw


def rows_of(group_by: str, start=RANGE[0], end=RANGE[1]):
    result = unit_economics(start=start, end=end, group_by=[group_by])
    return result, {row.keys[group_by]: row.figures for row in result.rows}


@pytest.mark.django_db
class TestCapacityRevenueByHand:
    """Capacity in [T0, T0 + 6 h): the rental 4 × 4 h × 3.00 = 48.00; acme's reservation from
    T0 + 2 h, prorated: 2 × 4 h × 5.00 = 40.00; globex's pinned one 1 × 6 h × 1.25 = 7.50.
    Usage 5.50 + 0.20 + 2.50 = 8.20. Revenue 103.70, of it 95.50 capacity."""

    @pytest.fixture(autouse=True)
    def allocated(self, rented):
        costs_allocate(start=RANGE[0], end=RANGE[1], as_of=RANGE[1])

    def test_by_customer_the_renter_pays_its_rental_not_its_tokens_again(self):
        result, rows = rows_of("customer")

        acme, globex = rows["acme"], rows["globex"]
        assert (acme.revenue, acme.capacity_revenue, acme.usage_revenue) == (usd("45.50"), usd("40.00"), usd("5.50"))
        assert (globex.revenue, globex.capacity_revenue, globex.usage_revenue) == \
            (usd("58.20"), usd("55.50"), usd("2.70"))
        assert globex.tokens == 1_100_000 + 1_000_000 + 1_000_000  # the covered tokens are still shown
        assert (globex.covered_tokens, acme.covered_tokens) == (1_100_000, 0)
        assert result.totals.revenue == usd("103.70") == acme.revenue + globex.revenue
        assert result.capacity_revenue_outside_rows == 0

    def test_by_cluster_the_rental_goes_to_the_rented_cluster_and_an_unpinned_reservation_to_no_row(self):
        result, rows = rows_of("cluster")

        iad, cw = rows["iad-h100-a"], rows["cw-h100-a"]
        assert (iad.revenue, iad.capacity_revenue) == (usd("13.00"), usd("7.50"))  # 5.50 + the pinned 7.50
        assert (cw.revenue, cw.capacity_revenue) == (usd("50.70"), usd("48.00"))  # 0.20 + 2.50 + the rental
        # cw-h100-a: 8.00 an hour; allocated at T0, T0 + 1 h (the renter) and T0 + 4 h (globex's
        # usage after the rental); T0 + 2 h and 3 h are globex's reserved idle; T0 + 5 h fleet idle.
        assert (cw.hardware_cost_shown, cw.power_cost_shown, cw.reserved_idle_cost_shown, cw.idle_cost_shown) == \
            (usd("24.00"), usd("0.00"), usd("16.00"), usd("8.00"))
        assert cw.gross_margin_shown == usd("26.70")
        assert result.capacity_revenue_outside_rows == usd("40.00")
        assert iad.revenue + cw.revenue + result.capacity_revenue_outside_rows == result.totals.revenue == \
            usd("103.70")

    def test_by_ownership_owned_and_leased_side_by_side(self):
        result, rows = rows_of("ownership")

        assert {k: (f.revenue, f.capacity_revenue) for k, f in rows.items()} == {
            "owned": (usd("13.00"), usd("7.50")), "leased": (usd("50.70"), usd("48.00"))}
        assert sum(f.revenue for f in rows.values()) + result.capacity_revenue_outside_rows == result.totals.revenue
        assert result.totals.capacity_revenue == usd("95.50")

    def test_by_model_tier_reservations_go_to_their_tier_and_the_rental_to_the_totals(self):
        result, rows = rows_of("model_tier")

        frontier, nano = rows["frontier"], rows["nano"]
        # frontier: 5.50 + 0 (provisioned) + 0 (covered) + 2.50, and acme's 40.00
        assert (frontier.revenue, frontier.capacity_revenue, frontier.covered_tokens) == \
            (usd("48.00"), usd("40.00"), 1_100_000)
        assert (nano.revenue, nano.capacity_revenue) == (usd("7.70"), usd("7.50"))
        assert result.capacity_revenue_outside_rows == usd("48.00")
        assert frontier.revenue + nano.revenue + result.capacity_revenue_outside_rows == result.totals.revenue

    def test_by_day_each_days_hours_priced_apart(self):
        costs_allocate(start=RANGE[1], end=T0 + 16 * HOUR, as_of=T0 + 16 * HOUR)

        result, rows = rows_of("day", start=T0, end=T0 + 16 * HOUR)  # to 02:00 on the 3rd

        second, third = rows[datetime(2026, 3, 2, tzinfo=UTC)], rows[datetime(2026, 3, 3, tzinfo=UTC)]
        # the 2nd: 48.00 + 7.50 + acme's 12 h (12:00–24:00) 2 × 12 × 5.00 = 120.00; the 3rd: 2 h, 20.00
        assert second.capacity_revenue == usd("175.50") and third.capacity_revenue == usd("20.00")
        assert result.totals.capacity_revenue == usd("195.50") and result.capacity_revenue_outside_rows == 0

    def test_the_api_shows_capacity_apart(self, api_client_for):
        response = api_client_for("admin").get("/api/v1/unit-economics", {
            "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T16:00:00Z", "group_by": "model_tier"})

        assert response.status_code == 200, response.json()
        body = response.json()
        frontier = next(row for row in body["results"] if row["model_tier"] == "frontier")
        assert (frontier["revenue"], frontier["usage_revenue"], frontier["capacity_revenue"],
                frontier["covered_tokens"]) == ("48.00", "8.00", "40.00", 1_100_000)
        assert (body["capacity_revenue"], body["capacity_revenue_outside_rows"]) == ("95.50", "48.00")
        totals = body["totals"]
        assert (totals["revenue"], totals["usage_revenue"], totals["capacity_revenue"],
                totals["capacity_revenue_outside_rows"]) == ("103.70", "8.20", "95.50", "48.00")


@pytest.mark.django_db
def test_a_months_revenue_per_customer_is_its_invoices_usage_and_capacity_lines(rented):
    costs_allocate(start=MARCH, end=APRIL, as_of=APRIL)

    result = unit_economics(start=MARCH, end=APRIL, group_by=["customer"])
    invoices = period_rate(customer_ids=["acme", "globex"], start=MARCH, end=APRIL)

    rows = {row.keys["customer"]: row.figures for row in result.rows}
    for customer_id, invoice in invoices.items():
        billed = {kind: sum((line.amount for line in invoice.lines if line.kind == kind), Decimal(0))
                  for kind in ("usage", "late_usage", "capacity")}
        figures = rows[customer_id]
        assert figures.revenue == billed["usage"] + billed["late_usage"] + billed["capacity"], customer_id
        assert figures.capacity_revenue == billed["capacity"], customer_id
    # acme's reservation from Mar 2 12:00 to the month's end: 708 h × 2 × 5.00 = 7,080.00
    assert rows["acme"].capacity_revenue == usd("7080.00")
    assert rows["globex"].capacity_revenue == usd("48.00") + usd("7.50")


def test_a_renters_covered_usage_raises_no_margin_alert(rented):
    from infra_inventory.margins import margin_alerts_record
    from infra_inventory.models import MarginAlert

    from metering.services import utc_now

    day = T0.replace(hour=0)
    costs_allocate(start=day, end=day + 24 * HOUR, as_of=utc_now())  # after the inventory was written

    check = margin_alerts_record(start=day, end=day + 24 * HOUR, as_of=utc_now())

    assert check.days_checked == [day]
    economics = unit_economics(start=day, end=day + 24 * HOUR, group_by=["customer", "model_tier"])
    globex = next(r.figures for r in economics.rows if r.keys == {"customer": "globex", "model_tier": "frontier"})
    assert globex.covered_tokens and globex.revenue < globex.cost  # what a per-tier check would have flagged
    assert not MarginAlert.objects.filter(customer_id="globex", model_tier="frontier").exists()
