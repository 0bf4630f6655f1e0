"""Leases and grid intensities in the admin: finance managers add them, viewers read them,
a lease is refused on an owned cluster; unpriced leased hours are listed read-only."""

from decimal import Decimal

import pytest

from infra_inventory.inventory_services import cluster_create, datacenter_create, hardware_sku_create
from infra_inventory.models import GridIntensity, Lease, UnpricedClusterHour
from tests.conftest import utc
from tests.infra_inventory.test_inventory_admin import url


@pytest.fixture
def fleet(db):
    sku = hardware_sku_create(name="h100-sxm", vendor="NVIDIA", accelerator="H100 SXM", unit_cost=Decimal("30000"),
                              amortization_months=48, board_watts=700)
    dc = datacenter_create(name="iad-1", region="us-east", pue=Decimal("1.20"))
    owned = cluster_create(name="iad-h100-a", datacenter=dc, sku=sku, accelerator_count=8,
                           in_service_from=utc(2026, 1, 1))
    leased = cluster_create(name="cw-h100-a", datacenter=dc, sku=sku, accelerator_count=4,
                            in_service_from=utc(2026, 1, 1), ownership="leased")
    return dc, owned, leased


def lease_form(cluster, **change):
    return {"cluster": cluster.pk, "provider": "CoreWeave", "effective_from_0": "2026-03-01",
            "effective_from_1": "00:00:00", "price_per_accelerator_hour": "2.10", **change}


@pytest.mark.django_db
class TestLeaseAdmin:
    def test_a_manager_adds_a_lease_and_a_viewer_may_not(self, manager, viewer, fleet):
        _, _, leased = fleet

        refused = viewer.post(url("lease_add"), lease_form(leased))
        added = manager.post(url("lease_add"), lease_form(leased))
        listed = viewer.get(url("lease_changelist"))

        assert refused.status_code == 403
        assert added.status_code == 302
        assert Lease.objects.get(cluster=leased).price_per_accelerator_hour == Decimal("2.10")
        assert listed.status_code == 200 and "CoreWeave" in listed.content.decode()

    def test_a_lease_of_an_owned_cluster_or_off_the_hour_is_refused(self, manager, fleet):
        _, owned, leased = fleet

        on_owned = manager.post(url("lease_add"), lease_form(owned))
        off_hour = manager.post(url("lease_add"), lease_form(leased, effective_from_1="00:30:00"))

        assert "cluster" in on_owned.context["adminform"].form.errors
        assert "effective_from" in off_hour.context["adminform"].form.errors
        assert not Lease.objects.exists()

    def test_a_manager_adds_a_grid_intensity(self, manager, viewer, fleet):
        dc, _, _ = fleet
        form = {"datacenter": dc.pk, "effective_from_0": "2026-03-01", "effective_from_1": "00:00:00",
                "g_co2e_per_kwh": "380"}

        refused = viewer.post(url("gridintensity_add"), form)
        added = manager.post(url("gridintensity_add"), form)

        assert (refused.status_code, added.status_code) == (403, 302)
        assert GridIntensity.objects.get(datacenter=dc).g_co2e_per_kwh == Decimal("380")

    def test_unpriced_hours_are_listed_and_read_only(self, manager, fleet):
        _, _, leased = fleet
        row = UnpricedClusterHour.objects.create(cluster=leased, hour=utc(2026, 3, 2, 10), tokens=500_000)

        listed = manager.get(url("unpricedclusterhour_changelist"))
        add = manager.get(url("unpricedclusterhour_add"))

        assert listed.status_code == 200 and "cw-h100-a" in listed.content.decode()
        assert add.status_code == 403
        assert UnpricedClusterHour.objects.filter(pk=row.pk).exists()
