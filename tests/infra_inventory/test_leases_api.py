"""Leases, grid intensities, cluster ownership and SKU embodied footprints over REST (API.md:
Infrastructure and costs): the documented shapes, refusals as problems naming the field, and
what each one changes in the allocation."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from infra_inventory.inventory_services import cluster_create, datacenter_create, hardware_sku_create
from infra_inventory.models import Cluster, ClusterHourCost, GridIntensity, HardwareSku, Lease
from infra_inventory.services import costs_allocate
from tests.infra_inventory.test_inventory_api import PROBLEM, field_errors, url

HOUR = timedelta(hours=1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def admin(api_client_for):
    return api_client_for("admin")


@pytest.fixture
def fleet(db):
    sku = hardware_sku_create(name="h100-sxm", vendor="NVIDIA", accelerator="H100 SXM", unit_cost=Decimal("30000"),
                              amortization_months=48, board_watts=700)
    dc = datacenter_create(name="iad-1", region="us-east", pue=Decimal("1.20"))
    owned = cluster_create(name="iad-h100-a", datacenter=dc, sku=sku, accelerator_count=8,
                           in_service_from=utc(2026, 1, 1))
    leased = cluster_create(name="cw-h100-a", datacenter=dc, sku=sku, accelerator_count=4,
                            in_service_from=utc(2026, 1, 1), ownership="leased")
    return {"sku": sku, "datacenter": dc, "owned": owned, "leased": leased}


LEASE = {"cluster": "cw-h100-a", "provider": "CoreWeave", "effective_from": "2026-03-01T00:00:00Z",
         "price_per_accelerator_hour": "2.100000", "includes_power": False, "committed_until": None}


@pytest.mark.django_db
class TestClusterOwnership:
    def test_a_leased_cluster_is_created_and_filtered_by_ownership(self, admin, fleet):
        body = {"name": "aws-h100-b", "datacenter": "iad-1", "sku": "h100-sxm", "accelerator_count": 16,
                "in_service_from": "2026-03-01T00:00:00Z", "in_service_to": None, "ownership": "leased"}

        created = admin.post(url("clusters"), body, format="json")
        leased = admin.get(url("clusters"), {"ownership": "leased"})

        assert created.status_code == 201
        assert created.json() == body
        assert Cluster.objects.get(name="aws-h100-b").ownership == "leased"
        assert [c["name"] for c in leased.json()["results"]] == ["aws-h100-b", "cw-h100-a"]

    def test_ownership_defaults_to_owned_and_refuses_other_values(self, admin, fleet):
        body = {"name": "iad-h100-c", "datacenter": "iad-1", "sku": "h100-sxm", "accelerator_count": 8,
                "in_service_from": "2026-03-01T00:00:00Z"}

        created = admin.post(url("clusters"), body, format="json")
        refused = admin.post(url("clusters"), body | {"name": "iad-h100-d", "ownership": "rented"}, format="json")

        assert created.json()["ownership"] == "owned"
        assert refused.status_code == 422 and "ownership" in field_errors(refused)


@pytest.mark.django_db
class TestLeases:
    def test_creates_and_lists_in_the_documented_shape(self, admin, fleet):
        created = admin.post(url("leases"), LEASE, format="json")
        listed = admin.get(url("leases"), {"cluster": "cw-h100-a"})

        assert created.status_code == 201
        assert created.json() == LEASE
        assert listed.json() == {"next": None, "results": [LEASE]}
        stored = Lease.objects.get(cluster=fleet["leased"])
        assert (stored.price_per_accelerator_hour, stored.includes_power) == (Decimal("2.1"), False)

    def test_the_lease_prices_the_leased_cluster_hour(self, admin, fleet):
        admin.post(url("leases"), LEASE | {"includes_power": True}, format="json")

        costs_allocate(start=utc(2026, 3, 2, 10), end=utc(2026, 3, 2, 11), as_of=utc(2026, 3, 2, 11))

        cost = ClusterHourCost.objects.get(cluster=fleet["leased"], hour=utc(2026, 3, 2, 10))
        assert (cost.hardware_cost, cost.power_cost) == (Decimal("8.400000"), Decimal("0"))

    def test_a_second_lease_at_the_same_instant_is_409(self, admin, fleet):
        admin.post(url("leases"), LEASE, format="json")

        again = admin.post(url("leases"), LEASE | {"price_per_accelerator_hour": "3.00"}, format="json")

        assert again.status_code == 409 and again["Content-Type"] == PROBLEM
        assert "effective_from" in again.json()["errors"]
        assert Lease.objects.filter(cluster=fleet["leased"]).count() == 1

    def test_an_owned_cluster_has_no_lease(self, admin, fleet):
        response = admin.post(url("leases"), LEASE | {"cluster": "iad-h100-a"}, format="json")

        assert response.status_code == 422 and response["Content-Type"] == PROBLEM
        assert response.json()["errors"]["cluster"] == ["iad-h100-a is not a leased cluster."]
        assert not Lease.objects.filter(cluster=fleet["owned"]).exists()

    @pytest.mark.parametrize(("change", "field"), [
        ({"cluster": "nope"}, "cluster"),
        ({"effective_from": "2026-03-01T00:30:00Z"}, "effective_from"),
        ({"price_per_accelerator_hour": "-1"}, "price_per_accelerator_hour"),
        ({"price_per_accelerator_hour": "1.1234567"}, "price_per_accelerator_hour"),
        ({"committed_until": "2026-02-01T00:00:00Z"}, "committed_until"),
        ({"provider": ""}, "provider"),
    ])
    def test_bad_input_is_a_422_naming_the_field(self, admin, fleet, change, field):
        response = admin.post(url("leases"), LEASE | change, format="json")

        assert response.status_code == 422
        assert field in field_errors(response)


@pytest.mark.django_db
class TestGridIntensities:
    BODY = {"datacenter": "iad-1", "effective_from": "2026-03-01T00:00:00Z", "g_co2e_per_kwh": "380"}

    def test_creates_lists_and_refuses_the_same_instant_twice(self, admin, fleet):
        created = admin.post(url("grid-intensities"), self.BODY, format="json")
        listed = admin.get(url("grid-intensities"), {"datacenter": "iad-1"})
        again = admin.post(url("grid-intensities"), self.BODY | {"g_co2e_per_kwh": "400"}, format="json")

        assert created.status_code == 201
        assert created.json() == self.BODY
        assert listed.json()["results"] == [self.BODY]
        assert again.status_code == 409
        assert GridIntensity.objects.get(datacenter=fleet["datacenter"]).g_co2e_per_kwh == Decimal("380")

    @pytest.mark.parametrize(("change", "field"), [
        ({"datacenter": "ord-9"}, "datacenter"), ({"g_co2e_per_kwh": "-5"}, "g_co2e_per_kwh"),
        ({"effective_from": "yesterday"}, "effective_from"),
    ])
    def test_bad_input_is_a_422_naming_the_field(self, admin, fleet, change, field):
        response = admin.post(url("grid-intensities"), self.BODY | change, format="json")

        assert response.status_code == 422
        assert field in field_errors(response)


@pytest.mark.django_db
def test_a_sku_takes_an_embodied_footprint_and_defaults_to_none(admin):
    body = {"name": "mi300x", "vendor": "AMD", "accelerator": "MI300X", "unit_cost": "15000.00",
            "amortization_months": 48, "board_watts": 750}

    plain = admin.post(url("hardware-skus"), body, format="json")
    with_footprint = admin.post(url("hardware-skus"), body | {"name": "mi325x", "embodied_kg_co2e": "1800.25"},
                                format="json")
    negative = admin.post(url("hardware-skus"), body | {"name": "mi355x", "embodied_kg_co2e": "-1"}, format="json")

    assert plain.json()["embodied_kg_co2e"] == "0"
    assert with_footprint.json()["embodied_kg_co2e"] == "1800.25"
    assert HardwareSku.objects.get(name="mi325x").embodied_kg_co2e == Decimal("1800.25")
    assert negative.status_code == 422 and "embodied_kg_co2e" in field_errors(negative)
