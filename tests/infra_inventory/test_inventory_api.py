"""The inventory and power readings over REST (API.md: Infrastructure and costs): each
endpoint creates and lists in the documented shapes, refuses bad input with the field
named, and is for admin keys only; readings are all or nothing, idempotent and upserted."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from infra_inventory.inventory_services import (
    cluster_create, datacenter_create, hardware_sku_create, power_readings_record,
)
from infra_inventory.models import Cluster, Deployment, HardwareSku, PowerContract, PowerReading
from infra_inventory.services import costs_allocate, hours_stale
from metering.services import utc_now
from tests.conftest import utc

PROBLEM = "application/problem+json"
INVENTORY_PATHS = ["hardware-skus", "datacenters", "power-contracts", "clusters", "deployments", "power-readings",
                   "leases", "grid-intensities"]

SKU = {"name": "h100-sxm", "vendor": "NVIDIA", "accelerator": "H100 SXM", "unit_cost": "30000.00",
       "amortization_months": 48, "board_watts": 700, "embodied_kg_co2e": "2190.5",
       "token_weights": {"input": "1", "cached_input": "0.1", "cache_write": "1.1", "cache_write_long": "1.6",
                         "audio_input": "2.5", "output": "4", "audio_output": "7.25"}}
DEFAULT_WEIGHTS = {"input": "1", "cached_input": "0.1", "cache_write": "1.25", "cache_write_long": "2",
                   "audio_input": "2", "output": "4", "audio_output": "8"}


def url(path: str) -> str:
    return f"/api/v1/{path}"


def field_errors(response) -> dict:
    assert response["Content-Type"] == PROBLEM
    return response.json()["errors"]


@pytest.fixture
def admin(api_client_for):
    return api_client_for("admin")


@pytest.fixture
def fleet(db):
    """One SKU in one datacenter, a cluster in service since 2026-01-01 and one retired
    on 2026-06-01."""
    sku = hardware_sku_create(name="h100-sxm", vendor="NVIDIA", accelerator="H100 SXM", unit_cost=Decimal("30000"),
                              amortization_months=48, board_watts=700)
    dc = datacenter_create(name="iad-1", region="us-east", pue=Decimal("1.20"))
    live = cluster_create(name="iad-h100-a", datacenter=dc, sku=sku, accelerator_count=1024,
                          in_service_from=utc(2026, 1, 1))
    retired = cluster_create(name="iad-h100-old", datacenter=dc, sku=sku, accelerator_count=8,
                             in_service_from=utc(2025, 1, 1), in_service_to=utc(2026, 6, 1))
    return {"sku": sku, "datacenter": dc, "live": live, "retired": retired}


@pytest.mark.django_db
class TestHardwareSkus:
    def test_creates_and_lists_in_the_documented_shape(self, admin):
        created = admin.post(url("hardware-skus"), SKU, format="json")

        listed = admin.get(url("hardware-skus"))

        assert created.status_code == 201
        assert created.json() == SKU
        assert listed.json() == {"next": None, "results": [SKU]}
        stored = HardwareSku.objects.get(name="h100-sxm")
        assert (stored.weight_cache_write, stored.weight_cache_write_long, stored.weight_audio_input,
                stored.weight_audio_output) == (Decimal("1.1"), Decimal("1.6"), Decimal("2.5"), Decimal("7.25"))

    def test_token_weights_default_per_class(self, admin):
        body = {k: v for k, v in SKU.items() if k != "token_weights"} | {"name": "mi300x", "unit_cost": "15000.5"}

        created = admin.post(url("hardware-skus"), body, format="json")

        assert created.status_code == 201
        assert created.json()["unit_cost"] == "15000.50"
        assert created.json()["token_weights"] == DEFAULT_WEIGHTS  # DESIGN.md §4's 1, 0.1, 4 among them

    def test_the_weights_posted_before_the_newer_classes_still_create_a_sku(self, admin):
        created = admin.post(url("hardware-skus"), SKU | {"token_weights": {"input": "1", "cached_input": "0.1",
                                                                            "output": "3.5"}}, format="json")

        assert created.status_code == 201
        assert created.json()["token_weights"] == DEFAULT_WEIGHTS | {"output": "3.5"}

    def test_one_new_class_weight_given_keeps_the_defaults_of_the_others(self, admin):
        created = admin.post(url("hardware-skus"), SKU | {"token_weights": {"audio_output": "12"}}, format="json")

        assert created.json()["token_weights"] == DEFAULT_WEIGHTS | {"audio_output": "12"}

    @pytest.mark.parametrize("token_class", ["cache_write", "cache_write_long", "audio_input", "audio_output"])
    def test_a_negative_weight_of_a_newer_class_is_a_422_naming_it(self, admin, token_class):
        response = admin.post(url("hardware-skus"), SKU | {"token_weights": {token_class: "-0.5"}}, format="json")

        assert response.status_code == 422
        assert response.json()["status"] == 422 and response.json()["title"]
        assert field_errors(response)[f"token_weights.{token_class}"] == [
            "Ensure this value is greater than or equal to 0."]
        assert not HardwareSku.objects.exists()

    def test_only_newer_class_weights_above_zero_is_enough(self, admin):
        zeros = {c: "0" for c in DEFAULT_WEIGHTS}

        created = admin.post(url("hardware-skus"), SKU | {"token_weights": zeros | {"audio_input": "3"}},
                             format="json")

        assert created.status_code == 201
        assert created.json()["token_weights"] == zeros | {"audio_input": "3"}

    def test_the_database_refuses_a_negative_weight_of_any_class(self, db):
        for token_class in DEFAULT_WEIGHTS:
            with pytest.raises(IntegrityError, match="sku_weights_not_negative"), transaction.atomic():
                HardwareSku.objects.create(name=f"bad-{token_class}".replace("_", "-"), vendor="x", accelerator="x",
                                           unit_cost=Decimal(1), amortization_months=1, board_watts=1,
                                           **{f"weight_{token_class}": Decimal(-1)})

    @pytest.mark.parametrize(("change", "field"), [
        ({"unit_cost": "-1.00"}, "unit_cost"),
        ({"amortization_months": 0}, "amortization_months"),
        ({"board_watts": 0}, "board_watts"),
        ({"name": "not a slug"}, "name"),
        ({"token_weights": {"input": "-1"}}, "token_weights.input"),
        ({"token_weights": {"input": "0", "cached_input": "0", "cache_write": "0", "cache_write_long": "0",
                            "audio_input": "0", "output": "0", "audio_output": "0"}}, "token_weights.non_field_errors"),
        ({"token_weights": {"audio_output": "abc"}}, "token_weights.audio_output"),
        ({"token_weights": {"cache_write": "12345.00001"}}, "token_weights.cache_write"),
    ])
    def test_bad_input_is_a_422_naming_the_field(self, admin, change, field):
        response = admin.post(url("hardware-skus"), SKU | change, format="json")

        assert response.status_code == 422
        assert field in field_errors(response)

    def test_a_taken_name_is_a_409(self, admin):
        admin.post(url("hardware-skus"), SKU, format="json")

        response = admin.post(url("hardware-skus"), SKU, format="json")

        assert response.status_code == 409
        assert "name" in field_errors(response)


@pytest.mark.django_db
class TestDatacenters:
    def test_creates_and_lists(self, admin):
        body = {"name": "iad-1", "region": "us-east", "pue": "1.2"}

        created = admin.post(url("datacenters"), body, format="json")
        listed = admin.get(url("datacenters"), {"region": "us-east"})

        assert created.status_code == 201
        assert created.json() == {"name": "iad-1", "region": "us-east", "pue": "1.20"}
        assert listed.json()["results"] == [created.json()]

    def test_a_pue_below_one_is_a_422(self, admin):
        response = admin.post(url("datacenters"), {"name": "iad-1", "region": "us-east", "pue": "0.90"}, format="json")

        assert response.status_code == 422
        assert "pue" in field_errors(response)


@pytest.mark.django_db
class TestPowerContracts:
    BODY = {"datacenter": "iad-1", "effective_from": "2026-01-01T00:00:00Z", "price_per_kwh": "0.08"}

    def test_creates_and_lists(self, admin, fleet):
        created = admin.post(url("power-contracts"), self.BODY, format="json")
        listed = admin.get(url("power-contracts"), {"datacenter": "iad-1"})

        assert created.status_code == 201
        assert created.json() == {"datacenter": "iad-1", "effective_from": "2026-01-01T00:00:00Z",
                                  "price_per_kwh": "0.0800"}
        assert listed.json() == {"next": None, "results": [created.json()]}

    def test_the_same_datacenter_and_instant_twice_is_a_409_problem(self, admin, fleet):
        admin.post(url("power-contracts"), self.BODY, format="json")

        again = admin.post(url("power-contracts"), self.BODY | {"price_per_kwh": "0.09"}, format="json")

        assert again.status_code == 409
        assert again.json()["status"] == 409
        assert "effective_from" in field_errors(again)
        assert [c.price_per_kwh for c in PowerContract.objects.filter(datacenter=fleet["datacenter"])] == [
            Decimal("0.0800")]

    @pytest.mark.parametrize(("change", "field"), [
        ({"price_per_kwh": "-0.01"}, "price_per_kwh"),
        ({"datacenter": "nowhere-9"}, "datacenter"),
        ({"effective_from": "2026-01-01T00:30:00Z"}, "effective_from"),
        ({"effective_from": "2026-01-01T05:00:00+05:30"}, "effective_from"),  # 23:30 UTC
    ])
    def test_bad_input_is_a_422_naming_the_field(self, admin, fleet, change, field):
        response = admin.post(url("power-contracts"), self.BODY | change, format="json")

        assert response.status_code == 422
        assert field in field_errors(response)


@pytest.mark.django_db
class TestClusters:
    BODY = {"name": "iad-h100-b", "datacenter": "iad-1", "sku": "h100-sxm", "accelerator_count": 1024,
            "in_service_from": "2026-03-01T00:00:00Z", "in_service_to": None, "ownership": "owned"}

    def test_creates_and_lists(self, admin, fleet):
        created = admin.post(url("clusters"), self.BODY, format="json")
        listed = admin.get(url("clusters"), {"datacenter": "iad-1"})

        assert created.status_code == 201
        assert created.json() == self.BODY
        assert [c["name"] for c in listed.json()["results"]] == ["iad-h100-a", "iad-h100-b", "iad-h100-old"]
        assert listed.json()["results"][2]["in_service_to"] == "2026-06-01T00:00:00Z"

    def test_unknown_datacenter_and_sku_are_422_field_errors(self, admin, fleet):
        response = admin.post(url("clusters"), self.BODY | {"datacenter": "ord-9", "sku": "tpu-v9"}, format="json")

        errors = field_errors(response)
        assert response.status_code == 422
        assert errors["datacenter"] == ["No datacenter named 'ord-9'."]
        assert errors["sku"] == ["No hardware SKU named 'tpu-v9'."]

    @pytest.mark.parametrize(("change", "field"), [
        ({"in_service_to": "2026-02-01T00:00:00Z"}, "in_service_to"),
        ({"in_service_to": "2026-03-01T00:00:00Z"}, "in_service_to"),
        ({"in_service_from": "2026-03-01T00:00:01Z"}, "in_service_from"),
        ({"in_service_to": "2026-04-01T12:15:00Z"}, "in_service_to"),
        ({"accelerator_count": 0}, "accelerator_count"),
    ])
    def test_bad_input_is_a_422_naming_the_field(self, admin, fleet, change, field):
        response = admin.post(url("clusters"), self.BODY | change, format="json")

        assert response.status_code == 422
        assert field in field_errors(response)
        assert not Cluster.objects.filter(name="iad-h100-b").exists()

    def test_a_taken_name_is_a_409(self, admin, fleet):
        response = admin.post(url("clusters"), self.BODY | {"name": "iad-h100-a"}, format="json")

        assert response.status_code == 409
        assert "name" in field_errors(response)


@pytest.mark.django_db
class TestDeployments:
    BODY = {"model": "gpt-5.4", "region": "us-east", "cluster": "iad-h100-a", "share": "0.5"}

    def test_creates_and_lists(self, admin, catalog, fleet):
        created = admin.post(url("deployments"), self.BODY, format="json")
        listed = admin.get(url("deployments"), {"model": "gpt-5.4", "cluster": "iad-h100-a"})

        assert created.status_code == 201
        assert created.json() == self.BODY
        assert listed.json() == {"next": None, "results": [self.BODY]}

    @pytest.mark.parametrize(("change", "field"), [
        ({"model": "gpt-9"}, "model"),
        ({"cluster": "nope-1"}, "cluster"),
        ({"share": "0"}, "share"),
        ({"share": "-0.5"}, "share"),
        ({"share": "1.5"}, "share"),
        ({"share": "0.12345"}, "share"),
    ])
    def test_bad_input_is_a_422_naming_the_field(self, admin, catalog, fleet, change, field):
        response = admin.post(url("deployments"), self.BODY | change, format="json")

        assert response.status_code == 422
        assert field in field_errors(response)
        assert not Deployment.objects.exists()

    def test_a_share_of_one_is_allowed_and_a_second_deployment_on_the_cluster_is_a_409(self, admin, catalog, fleet):
        first = admin.post(url("deployments"), self.BODY | {"share": "1"}, format="json")

        again = admin.post(url("deployments"), self.BODY, format="json")

        assert first.json()["share"] == "1"
        assert again.status_code == 409
        assert "cluster" in field_errors(again)


def reading(cluster="iad-h100-a", hour="2026-11-01T13:00:00Z", it_kwh="812.5") -> dict:
    return {"cluster": cluster, "hour": hour, "it_kwh": it_kwh}


def stored(cluster: Cluster) -> dict:
    return {r.hour: r.it_kwh for r in PowerReading.objects.filter(cluster=cluster)}


@pytest.mark.django_db
class TestPowerReadingsRecord:
    def test_records_a_batch_and_lists_it(self, admin, fleet):
        batch = [reading(), reading(hour="2026-11-01T14:00:00Z", it_kwh="790")]

        response = admin.post(url("power-readings"), {"readings": batch}, format="json")
        listed = admin.get(url("power-readings"), {"cluster": "iad-h100-a"})

        assert response.status_code == 200
        assert response.json() == {"received": 2, "changed": 2}
        assert [(r["cluster"], r["hour"], r["it_kwh"]) for r in listed.json()["results"]] == [
            ("iad-h100-a", "2026-11-01T13:00:00Z", "812.5000"), ("iad-h100-a", "2026-11-01T14:00:00Z", "790.0000")]
        assert listed.json()["next"] is None

    def test_the_same_reading_again_changes_nothing(self, admin, fleet):
        admin.post(url("power-readings"), {"readings": [reading()]}, format="json")
        first = PowerReading.objects.get(cluster=fleet["live"])

        again = admin.post(url("power-readings"), {"readings": [reading(it_kwh="812.50")]}, format="json")

        assert again.json() == {"received": 1, "changed": 0}
        assert PowerReading.objects.get(pk=first.pk).received_at == first.received_at

    def test_another_value_replaces_the_reading_and_its_received_at(self, admin, fleet):
        admin.post(url("power-readings"), {"readings": [reading()]}, format="json")
        first = PowerReading.objects.get(cluster=fleet["live"])

        again = admin.post(url("power-readings"), {"readings": [reading(it_kwh="800"), reading(
            hour="2026-11-01T15:00:00Z")]}, format="json")

        replaced = PowerReading.objects.get(pk=first.pk)
        assert again.json() == {"received": 2, "changed": 2}
        assert replaced.it_kwh == Decimal("800")
        assert replaced.received_at > first.received_at
        assert len(stored(fleet["live"])) == 2

    def test_a_replaced_reading_makes_its_allocated_hour_stale(self, admin, fleet):
        hour = utc(2026, 11, 1, 13)
        admin.post(url("power-readings"), {"readings": [reading()]}, format="json")
        costs_allocate(start=hour, end=hour + timedelta(hours=1), as_of=utc_now())
        unchanged_before = hours_stale(start=hour, end=hour + timedelta(hours=1))

        admin.post(url("power-readings"), {"readings": [reading(it_kwh="700")]}, format="json")

        assert unchanged_before == []
        assert hours_stale(start=hour, end=hour + timedelta(hours=1)) == [hour]

    def test_numbers_are_taken_exactly(self, admin, fleet):
        body = b'{"readings": [{"cluster": "iad-h100-a", "hour": "2026-11-01T13:00:00Z", "it_kwh": 0.1}]}'

        response = admin.post(url("power-readings"), body, content_type="application/json")

        assert response.json() == {"received": 1, "changed": 1}
        assert stored(fleet["live"]) == {utc(2026, 11, 1, 13): Decimal("0.1")}

    @pytest.mark.parametrize(("bad", "field", "message"), [
        (reading(cluster="nope-1"), "cluster", "No cluster named 'nope-1'."),
        (reading(it_kwh="-1"), "it_kwh", "Must not be negative"),
        (reading(it_kwh="lots"), "it_kwh", "Not a number"),
        (reading(it_kwh="1.00001"), "it_kwh", "At most 4 decimal places"),
        (reading(hour="2026-11-01T13:30:00Z"), "hour", "on an hour boundary"),
        (reading(hour="yesterday"), "hour", "Not an RFC 3339 instant"),
        (reading(hour="2025-12-31T23:00:00Z"), "hour", "Outside the service of iad-h100-a"),
        (reading(cluster="iad-h100-old", hour="2026-06-01T00:00:00Z"), "hour", "Outside the service of iad-h100-old"),
        ({"cluster": "iad-h100-a", "hour": "2026-11-01T13:00:00Z"}, "it_kwh", "This field is required."),
        (reading() | {"kwh": "1"}, "kwh", "Unknown field"),
        ("812.5", "non_field_errors", "A reading is an object"),
    ])
    def test_a_bad_reading_rejects_the_whole_batch_naming_its_index_and_field(self, admin, fleet, bad, field,
                                                                              message):
        batch = [reading(hour="2026-11-01T12:00:00Z"), bad]

        response = admin.post(url("power-readings"), {"readings": batch}, format="json")

        body = response.json()
        assert response.status_code == 422
        assert response["Content-Type"] == PROBLEM
        assert [r["index"] for r in body["rejected"]] == [1]
        assert message in body["rejected"][0]["errors"][field][0]
        assert f"readings[1].{field}" in body["errors"]
        assert stored(fleet["live"]) == {}

    def test_the_last_hour_before_retirement_is_in_service(self, admin, fleet):
        response = admin.post(url("power-readings"), {"readings": [
            reading(cluster="iad-h100-old", hour="2026-05-31T23:00:00Z")]}, format="json")

        assert response.json() == {"received": 1, "changed": 1}

    def test_every_bad_reading_is_listed(self, admin, fleet):
        batch = [reading(cluster="nope-1"), reading(hour="2026-11-01T14:00:00Z"), reading(it_kwh="-5")]

        response = admin.post(url("power-readings"), {"readings": batch}, format="json")

        assert [(r["index"], sorted(r["errors"])) for r in response.json()["rejected"]] == [
            (0, ["cluster"]), (2, ["it_kwh"])]

    def test_one_cluster_hour_with_two_values_in_a_batch_is_rejected(self, admin, fleet):
        response = admin.post(url("power-readings"), {"readings": [reading(), reading(it_kwh="1")]}, format="json")

        assert response.status_code == 422
        assert response.json()["rejected"][0]["index"] == 1

    def test_one_cluster_hour_twice_with_the_same_value_counts_once(self, admin, fleet):
        response = admin.post(url("power-readings"), {"readings": [reading(), reading(it_kwh="812.50")]},
                              format="json")

        assert response.json() == {"received": 2, "changed": 1}

    def test_ten_thousand_readings_are_one_request(self, admin, fleet):
        start = utc(2026, 1, 1)
        batch = [reading(hour=(start + timedelta(hours=h)).isoformat(), it_kwh=str(700 + h % 50))
                 for h in range(10_000)]

        response = admin.post(url("power-readings"), {"readings": batch}, format="json")

        assert response.json() == {"received": 10_000, "changed": 10_000}
        assert PowerReading.objects.filter(cluster=fleet["live"]).count() == 10_000

    def test_more_than_ten_thousand_readings_is_a_413(self, admin, fleet):
        start = utc(2026, 1, 1)
        batch = [reading(hour=(start + timedelta(hours=h)).isoformat()) for h in range(10_001)]

        response = admin.post(url("power-readings"), {"readings": batch}, format="json")

        assert response.status_code == 413
        assert response["Content-Type"] == PROBLEM
        assert stored(fleet["live"]) == {}

    @pytest.mark.parametrize("body", [{}, {"readings": "812.5"}, [reading()]])
    def test_a_body_without_a_readings_list_is_a_422(self, admin, fleet, body):
        response = admin.post(url("power-readings"), body, format="json")

        assert response.status_code == 422
        assert "readings" in field_errors(response)

    def test_an_empty_batch_is_a_422(self, admin, fleet):
        response = admin.post(url("power-readings"), {"readings": []}, format="json")

        assert response.status_code == 422
        assert "readings" in field_errors(response)

    def test_malformed_json_is_a_400(self, admin, fleet):
        response = admin.post(url("power-readings"), b'{"readings": [', content_type="application/json")

        assert response.status_code == 400
        assert response["Content-Type"] == PROBLEM


@pytest.mark.django_db
class TestPowerReadingsList:
    def test_filters_by_cluster_and_half_open_period(self, admin, fleet):
        hours = [utc(2026, 5, 31, h) for h in (20, 21, 22, 23)]
        power_readings_record(rows=[reading(cluster=c.name, hour=h.isoformat()) for h in hours
                                    for c in (fleet["live"], fleet["retired"])], as_of=utc_now())

        response = admin.get(url("power-readings"), {"cluster": "iad-h100-old", "start": "2026-05-31T21:00:00Z",
                                                     "end": "2026-05-31T23:00:00Z"})

        assert [(r["cluster"], r["hour"]) for r in response.json()["results"]] == [
            ("iad-h100-old", "2026-05-31T21:00:00Z"), ("iad-h100-old", "2026-05-31T22:00:00Z")]
        assert set(response.json()["results"][0]) == {"cluster", "hour", "it_kwh", "received_at"}

    def test_pages_with_a_next_link(self, admin, fleet):
        power_readings_record(rows=[reading(hour=utc(2026, 5, 1, h).isoformat()) for h in range(3)], as_of=utc_now())

        first = admin.get(url("power-readings"), {"limit": 2})
        second = admin.get(first.json()["next"])

        assert len(first.json()["results"]) == 2
        assert [r["hour"] for r in second.json()["results"]] == ["2026-05-01T02:00:00Z"]
        assert second.json()["next"] is None

    @pytest.mark.parametrize(("query", "field"), [
        ({"cluster": "nope-1"}, "cluster"),
        ({"start": "2026-05-02T00:00:00Z", "end": "2026-05-01T00:00:00Z"}, "end"),
        ({"start": "soon"}, "start"),
    ])
    def test_bad_queries_are_422(self, admin, fleet, query, field):
        response = admin.get(url("power-readings"), query)

        assert response.status_code == 422
        assert field in field_errors(response)


@pytest.mark.django_db
class TestAdminOnly:
    @pytest.mark.parametrize("scope", ["customer", "ingest"])
    @pytest.mark.parametrize("path", INVENTORY_PATHS)
    def test_other_keys_get_403(self, api_client_for, catalog, scope, path):
        client = api_client_for(scope, "acme" if scope == "customer" else None)

        listed = client.get(url(path))
        posted = client.post(url(path), {}, format="json")

        assert (listed.status_code, posted.status_code) == (403, 403)
        assert posted["Content-Type"] == PROBLEM

    @pytest.mark.parametrize("path", INVENTORY_PATHS)
    def test_no_key_gets_401(self, client, path):
        assert client.get(url(path)).status_code == 401
