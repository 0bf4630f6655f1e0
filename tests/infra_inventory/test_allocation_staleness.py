"""Hours already allocated are allocated again when what priced them changed afterwards
(services.hours_stale): a lease (new version or edited price), a rental created or ended
early, a grid intensity, a power contract, a cluster's ownership or service window, a
deleted lease. Each change makes exactly the hours it prices stale; the other hours keep
their rows. A datacenter without a grid intensity is reported, never counted as 0."""

from decimal import Decimal

import pytest
from django.contrib import admin

from billing.services.capacity import rental_create, rental_end
from infra_inventory.admin import LeaseAdmin
from infra_inventory.models import (
    AllocatedHour, Cluster, ClusterHourCost, CostAllocation, GridIntensity, Lease, PowerContract, UnplacedUsage,
)
from infra_inventory.services import (
    GridIntensityGap, costs_allocate, costs_allocate_stale, hours_stale, hours_without_grid_intensity,
)
from metering.services import utc_now
from tests.infra_inventory.test_allocation import (
    HOUR, SINCE, T0, cluster_make, datacenter_make, list_prices_publish, rollup, sku_make,
)
from tests.infra_inventory.test_inventory_admin import url

END = T0 + 6 * HOUR
HOURS = [T0 + n * HOUR for n in range(6)]


@pytest.fixture
def fleet(catalog):
    """iad-1 (PUE 1.25, 0.10 USD/kWh, 400 gCO2e/kWh): iad-h100-a owned, 8 × 35,040 over 48 months =
    8.00 an hour, 10 kWh of facility energy = 1.00 of power, 4 kg CO2e from the grid.
    cw-1 (PUE 1.10, 0.20 USD/kWh, no grid intensity): cw-h100-a leased, 4 accelerators at 2.10 from
    SINCE, 2.50 from T0 + 4 h (8.40, then 10.00; power 0.88).
    Every hour of [T0, T0 + 6 h): acme and globex 1,000,000 input tokens each on iad, globex 500,000
    on cw. Allocated after the inventory was written: nothing is stale."""
    list_prices_publish()
    sku = sku_make(embodied_kg_co2e=Decimal("1460"))
    iad_dc = datacenter_make("iad-1")
    GridIntensity.objects.create(datacenter=iad_dc, effective_from=SINCE, g_co2e_per_kwh=Decimal("400"))
    iad = cluster_make("iad-h100-a", iad_dc, sku)
    cw = cluster_make("cw-h100-a", datacenter_make("cw-1", pue="1.10", price="0.20"), sku, count=4)
    cw.ownership = Cluster.Ownership.LEASED
    cw.save()
    first = Lease.objects.create(cluster=cw, provider="CoreWeave", effective_from=SINCE,
                                 price_per_accelerator_hour=Decimal("2.10"))
    Lease.objects.create(cluster=cw, provider="CoreWeave", effective_from=T0 + 4 * HOUR,
                         price_per_accelerator_hour=Decimal("2.50"))
    for hour in HOURS:
        rollup("acme", "gpt-5.4", hour, input_tokens=1_000_000, cluster="iad-h100-a")
        rollup("globex", "gpt-5.4-nano", hour, input_tokens=1_000_000, cluster="iad-h100-a")
        rollup("globex", "gpt-5.4-nano", hour, input_tokens=500_000, cluster="cw-h100-a")
    costs_allocate(start=T0, end=END, as_of=utc_now())
    assert hours_stale(start=T0, end=END) == []
    return iad, cw, first


def rows() -> dict:
    """Each cluster-hour's cost row id: a row re-written by an allocation gets a new one."""
    return {(c.cluster.name, c.hour): c.pk for c in ClusterHourCost.objects.select_related("cluster")}


def cost(cluster, hour) -> ClusterHourCost:
    return ClusterHourCost.objects.get(cluster=cluster, hour=hour)


def kept(before: dict, after: dict, hours) -> bool:
    """The rows of `hours` are the same rows as before, and the other hours' are new ones."""
    same = {key for key in before if key[1] in hours}
    return all(after[key] == before[key] for key in same) and all(
        after.get(key) != before[key] for key in before if key[1] not in hours)


def redo() -> list:
    return costs_allocate_stale(start=T0, end=END, as_of=utc_now())


@pytest.mark.django_db
class TestLeases:
    def test_a_new_lease_version_reprices_its_term_only(self, fleet):
        _, cw, _ = fleet
        before = rows()

        Lease.objects.create(cluster=cw, provider="CoreWeave", effective_from=T0 + 2 * HOUR,
                             price_per_accelerator_hour=Decimal("3.00"))
        Lease.objects.create(cluster=cw, provider="CoreWeave", effective_from=END + 24 * HOUR,
                             price_per_accelerator_hour=Decimal("9.00"))  # after the window: prices nothing in it
        stale = hours_stale(start=T0, end=END)
        redone = redo()

        assert stale == redone == [T0 + 2 * HOUR, T0 + 3 * HOUR]  # until the version from T0 + 4 h
        assert [cost(cw, h).hardware_cost for h in HOURS] == [Decimal("8.40")] * 2 + [Decimal("12.00")] * 2 + [
            Decimal("10.00")] * 2
        assert kept(before, rows(), [T0, T0 + HOUR, T0 + 4 * HOUR, T0 + 5 * HOUR])
        assert hours_stale(start=T0, end=END) == []

    def test_a_lease_price_edited_reprices_the_hours_it_is_in_force(self, fleet):
        _, cw, first = fleet
        before = rows()

        first.price_per_accelerator_hour = Decimal("2.20")  # as the admin saves it
        first.save()
        redone = redo()

        assert redone == HOURS[:4]
        assert [cost(cw, h).hardware_cost for h in HOURS] == [Decimal("8.80")] * 4 + [Decimal("10.00")] * 2
        allocated = CostAllocation.objects.get(cluster=cw, hour=T0)
        assert (allocated.customer_id, allocated.hardware_cost) == ("globex", Decimal("8.80"))
        assert kept(before, rows(), HOURS[4:])

    def test_a_lease_deleted_in_the_admin_makes_its_clusters_hours_stale(self, fleet):
        _, cw, _ = fleet
        later = Lease.objects.get(cluster=cw, effective_from=T0 + 4 * HOUR)

        LeaseAdmin(Lease, admin.site).delete_model(None, later)
        redone = redo()

        assert redone == HOURS  # no row left to say which: every hour of the cluster
        assert [cost(cw, h).hardware_cost for h in HOURS] == [Decimal("8.40")] * 6

    def test_an_admin_form_saved_unchanged_makes_nothing_stale(self, manager, fleet):
        _, _, first = fleet
        form = {"provider": "CoreWeave", "price_per_accelerator_hour": "2.100000", "committed_until_0": "",
                "committed_until_1": ""}

        unchanged = manager.post(url("lease_change", first.pk), form)
        stale_unchanged = hours_stale(start=T0, end=END)
        changed = manager.post(url("lease_change", first.pk), {**form, "price_per_accelerator_hour": "2.30"})

        assert (unchanged.status_code, changed.status_code) == (302, 302)
        assert stale_unchanged == []
        assert hours_stale(start=T0, end=END) == HOURS[:4]


@pytest.mark.django_db
class TestRentals:
    def test_a_rental_created_after_allocation_moves_its_hours_to_the_renter(self, fleet):
        iad, _, _ = fleet
        before = rows()

        rental_create(customer_id="acme", cluster=iad.name, accelerator_hour_price=Decimal("4.00"),
                      starts_at=T0 + HOUR, ends_at=T0 + 3 * HOUR, actor="test", as_of=utc_now())
        redone = redo()

        assert redone == [T0 + HOUR, T0 + 2 * HOUR]
        rented = CostAllocation.objects.get(cluster=iad, hour=T0 + HOUR)
        assert (rented.customer_id, rented.hardware_cost, rented.power_cost) == (
            "acme", Decimal("8.000000"), Decimal("1.000000"))
        assert cost(iad, T0 + HOUR).rented_to == "acme"
        refused = UnplacedUsage.objects.get(hour=T0 + HOUR, cluster=iad.name)
        assert (refused.customer_id, refused.reason) == ("globex", UnplacedUsage.Reason.RENTED_TO_OTHER_CUSTOMER)
        assert CostAllocation.objects.filter(cluster=iad, hour=T0).count() == 2  # still shared
        assert kept(before, rows(), [T0, *HOURS[3:]])

    def test_a_rental_ended_early_gives_its_hours_back_to_the_fleet(self, fleet):
        iad, _, _ = fleet
        rental = rental_create(customer_id="acme", cluster=iad.name, accelerator_hour_price=Decimal("4.00"),
                               starts_at=T0 + HOUR, ends_at=None, actor="test", as_of=utc_now())
        assert redo() == HOURS[1:]
        assert hours_stale(start=T0, end=END) == []
        before = rows()

        rental_end(rental_id=rental.pk, ends_at=T0 + 3 * HOUR, actor="test", as_of=utc_now())
        redone = redo()

        assert redone == HOURS[3:]
        assert [cost(iad, h).rented_to for h in HOURS] == ["", "acme", "acme", "", "", ""]
        shared = dict(CostAllocation.objects.filter(cluster=iad, hour=T0 + 3 * HOUR)
                      .values_list("customer_id", "hardware_cost"))
        assert shared == {"acme": Decimal("4.000000"), "globex": Decimal("4.000000")}
        assert kept(before, rows(), HOURS[:3])


@pytest.mark.django_db
class TestGridIntensity:
    def test_a_datacenter_without_an_intensity_is_reported_not_counted_as_zero(self, fleet):
        iad, cw, _ = fleet

        gaps = hours_without_grid_intensity(start=T0, end=END)

        assert gaps == [GridIntensityGap(datacenter="cw-1", cluster_hours=6, energy_kwh=Decimal("26.4"),
                                         first_hour=T0, last_hour=T0 + 5 * HOUR)]
        assert all(cost(cw, h).grid_intensity_missing for h in HOURS)
        assert not any(cost(iad, h).grid_intensity_missing for h in HOURS)
        # the embodied share only: 4 × 1,460 kg over 48 × 730 hours
        assert cost(cw, T0).emissions_kg_co2e == Decimal("0.166667")

    def test_an_intensity_added_recomputes_the_emissions_of_its_hours(self, fleet):
        _, cw, _ = fleet
        before, embodied = rows(), cost(cw, T0).emissions_kg_co2e

        GridIntensity.objects.create(datacenter=cw.datacenter, effective_from=T0 + 2 * HOUR,
                                     g_co2e_per_kwh=Decimal("500"))
        GridIntensity.objects.create(datacenter=cw.datacenter, effective_from=END + HOUR,
                                     g_co2e_per_kwh=Decimal("450"))  # after the window
        redone = redo()

        assert redone == HOURS[2:]
        # 4.4 kWh × 500 g = 2.2 kg more than the embodied share
        assert [cost(cw, h).emissions_kg_co2e for h in HOURS] == [embodied] * 2 + [embodied + Decimal("2.2")] * 4
        assert [cost(cw, h).grid_intensity_missing for h in HOURS] == [True] * 2 + [False] * 4
        assert hours_without_grid_intensity(start=T0, end=END) == [GridIntensityGap(
            datacenter="cw-1", cluster_hours=2, energy_kwh=Decimal("8.8"), first_hour=T0, last_hour=T0 + HOUR)]
        assert kept(before, rows(), HOURS[:2])


@pytest.mark.django_db
class TestPowerAndClusters:
    def test_a_power_contract_added_reprices_power_from_its_hour(self, fleet):
        iad, _, _ = fleet
        before = rows()

        PowerContract.objects.create(datacenter=iad.datacenter, effective_from=T0 + 4 * HOUR,
                                     price_per_kwh=Decimal("0.20"))
        redone = redo()

        assert redone == HOURS[4:]
        assert [cost(iad, h).power_cost for h in HOURS] == [Decimal("1.00")] * 4 + [Decimal("2.00")] * 2
        assert kept(before, rows(), HOURS[:4])

    def test_a_cluster_that_becomes_owned_is_priced_by_its_amortization(self, fleet):
        _, cw, _ = fleet

        cw.ownership = Cluster.Ownership.OWNED
        cw.save()
        redone = redo()

        assert redone == HOURS
        assert [cost(cw, h).hardware_cost for h in HOURS] == [Decimal("4.00")] * 6  # 4 × 35,040 / (48 × 730)

    def test_a_service_window_shortened_drops_the_hours_it_no_longer_covers(self, fleet):
        iad, _, _ = fleet

        iad.in_service_to = T0 + 3 * HOUR
        iad.save()
        stale = hours_stale(start=T0, end=END)
        redo()

        assert stale == HOURS  # in service now, or allocated as in service
        assert sorted(ClusterHourCost.objects.filter(cluster=iad).values_list("hour", flat=True)) == HOURS[:3]

    def test_allocating_again_leaves_nothing_stale(self, fleet):
        before = rows()

        redone = redo()

        assert redone == []
        assert rows() == before
        assert AllocatedHour.objects.filter(hour__gte=T0, hour__lt=END).count() == 6
