"""Inventory admin for finance staff: managers edit the fleet, viewers read it, power
readings go in through the API's service (one on the form, many by CSV import), and the
allocation tables are read-only."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from infra_inventory.inventory_services import cluster_create, datacenter_create, hardware_sku_create
from infra_inventory.models import AllocatedHour, Cluster, HardwareSku, PowerReading
from tests.conftest import utc


def url(name: str, *args) -> str:
    return reverse(f"admin:infra_inventory_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def csv_file(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("readings.csv", text.encode(), content_type="text/csv")


@pytest.fixture
def cluster(db) -> Cluster:
    sku = hardware_sku_create(name="h100-sxm", vendor="NVIDIA", accelerator="H100 SXM", unit_cost=Decimal("30000"),
                              amortization_months=48, board_watts=700)
    dc = datacenter_create(name="iad-1", region="us-east", pue=Decimal("1.20"))
    return cluster_create(name="iad-h100-a", datacenter=dc, sku=sku, accelerator_count=1024,
                          in_service_from=utc(2026, 1, 1))


def readings_of(cluster: Cluster) -> dict:
    return {r.hour: r.it_kwh for r in PowerReading.objects.filter(cluster=cluster)}


@pytest.mark.django_db
class TestCsvImport:
    def test_imports_the_readings_and_says_how_many_changed(self, admin_client, cluster):
        admin_client.post(url("powerreading_import"), {"file": csv_file(
            "cluster,hour,it_kwh\niad-h100-a,2026-11-01T13:00:00Z,812.5\n")}, follow=True)

        response = admin_client.post(url("powerreading_import"), {"file": csv_file(
            "cluster,hour,it_kwh\n"
            "iad-h100-a,2026-11-01T13:00:00Z,812.5\n"
            "iad-h100-a,2026-11-01T14:00:00Z,790\n")}, follow=True)

        assert response.redirect_chain[-1][0] == url("powerreading_changelist")
        assert messages_of(response) == ["Readings received: 2; new or changed: 1; already recorded: 1."]
        assert readings_of(cluster) == {utc(2026, 11, 1, 13): Decimal("812.5"), utc(2026, 11, 1, 14): Decimal("790")}

    def test_a_bad_row_is_reported_by_line_and_nothing_is_imported(self, admin_client, cluster):
        text = ("\ufeffCluster,Hour,IT_kWh,note\n"
                "iad-h100-a,2026-11-01T13:00:00Z,812.5,ok\n"
                "\n"
                "iad-h100-a,2026-11-01T14:00:00Z,-3,meter glitch\n"
                "iad-h100-b,2026-11-01T15:00:00Z,1,\n")

        response = admin_client.post(url("powerreading_import"), {"file": csv_file(text)})

        rows = [(r["line"], sorted(r["errors"])) for r in response.context["row_errors"]]
        assert response.status_code == 200
        assert rows == [(4, ["it_kwh"]), (5, ["cluster"])]
        assert "Must not be negative" in response.content.decode()
        assert "No cluster named &#x27;iad-h100-b&#x27;." in response.content.decode()
        assert messages_of(response) == ["2 of 3 rows were rejected, so nothing was imported. Correct them and "
                                         "upload the file again."]
        assert readings_of(cluster) == {}

    @pytest.mark.parametrize(("text", "message"), [
        ("cluster,hour\niad-h100-a,2026-11-01T13:00:00Z\n", "it_kwh missing"),
        ("cluster,hour,it_kwh\n", "no reading"),
    ])
    def test_a_file_without_the_columns_or_rows_is_refused(self, admin_client, cluster, text, message):
        response = admin_client.post(url("powerreading_import"), {"file": csv_file(text)})

        assert message in str(response.context["form"].errors["file"])
        assert readings_of(cluster) == {}

    def test_a_manager_imports_and_a_viewer_may_not(self, manager, viewer, cluster):
        text = "cluster,hour,it_kwh\niad-h100-a,2026-11-01T13:00:00Z,812.5\n"

        refused = viewer.post(url("powerreading_import"), {"file": csv_file(text)})
        imported = manager.post(url("powerreading_import"), {"file": csv_file(text)})

        assert refused.status_code == 403
        assert imported.status_code == 302
        assert readings_of(cluster) == {utc(2026, 11, 1, 13): Decimal("812.5")}

    def test_the_list_links_to_the_import_for_those_who_may(self, manager, viewer, cluster):
        link = f'href="{url("powerreading_import")}"'

        assert link in manager.get(url("powerreading_changelist")).content.decode()
        assert link not in viewer.get(url("powerreading_changelist")).content.decode()


@pytest.mark.django_db
class TestReadingForm:
    def test_adding_a_reading_checks_the_service_window(self, manager, cluster):
        response = manager.post(url("powerreading_add"), {"cluster": cluster.pk, "hour_0": "2025-12-31",
                                                          "hour_1": "23:00:00", "it_kwh": "1"})

        assert "Outside the service of iad-h100-a" in str(response.context["adminform"].form.errors["hour"])
        assert readings_of(cluster) == {}

    def test_changing_the_value_renews_received_at(self, manager, cluster):
        manager.post(url("powerreading_add"), {"cluster": cluster.pk, "hour_0": "2026-11-01", "hour_1": "13:00:00",
                                               "it_kwh": "812.5"})
        first = PowerReading.objects.get(cluster=cluster)

        manager.post(url("powerreading_change", first.pk), {"it_kwh": "800"})

        changed = PowerReading.objects.get(pk=first.pk)
        assert changed.it_kwh == Decimal("800")
        assert changed.received_at > first.received_at


@pytest.mark.django_db
class TestInventoryEditing:
    def test_a_manager_adds_a_cluster_and_a_viewer_may_not(self, manager, viewer, cluster):
        form = {"name": "iad-h100-b", "datacenter": cluster.datacenter_id, "sku": cluster.sku_id,
                "accelerator_count": 8, "in_service_from_0": "2026-03-01", "in_service_from_1": "00:00:00",
                "ownership": "owned"}

        refused = viewer.post(url("cluster_add"), form)
        added = manager.post(url("cluster_add"), form)

        assert refused.status_code == 403
        assert added.status_code == 302
        assert Cluster.objects.get(name="iad-h100-b").accelerator_count == 8

    def test_instants_off_the_hour_are_refused(self, manager, cluster):
        form = {"name": "iad-h100-b", "datacenter": cluster.datacenter_id, "sku": cluster.sku_id,
                "accelerator_count": 8, "in_service_from_0": "2026-03-01", "in_service_from_1": "00:30:00"}

        response = manager.post(url("cluster_add"), form)

        assert "in_service_from" in response.context["adminform"].form.errors
        assert not Cluster.objects.filter(name="iad-h100-b").exists()

    def test_a_deployment_names_a_catalog_model(self, manager, catalog, cluster):
        form = {"model": "gpt-9", "region": "us-east", "cluster": cluster.pk, "share": "0.5"}

        response = manager.post(url("deployment_add"), form)

        assert "model" in response.context["adminform"].form.errors

    def test_a_manager_sets_every_token_weight_and_a_negative_one_is_refused(self, manager, db):
        form = {"name": "mi300x", "vendor": "AMD", "accelerator": "MI300X", "unit_cost": "15000.00",
                "amortization_months": 48, "board_watts": 750, "embodied_kg_co2e": "1500", "weight_input": "1",
                "weight_cached_input": "0.1",
                "weight_cache_write": "1.2", "weight_cache_write_long": "1.8", "weight_audio_input": "2.5",
                "weight_output": "4", "weight_audio_output": "-1"}

        refused = manager.post(url("hardwaresku_add"), form)
        added = manager.post(url("hardwaresku_add"), form | {"weight_audio_output": "9"})

        assert "weight_audio_output" in refused.context["adminform"].form.errors
        assert added.status_code == 302
        sku = HardwareSku.objects.get(name="mi300x")
        assert (sku.weight_cache_write, sku.weight_cache_write_long, sku.weight_audio_input, sku.weight_audio_output) \
            == (Decimal("1.2"), Decimal("1.8"), Decimal("2.5"), Decimal(9))
        assert sku.embodied_kg_co2e == Decimal(1500)

    def test_the_sku_form_explains_the_default_weights(self, manager, db):
        response = manager.get(url("hardwaresku_add"))

        form = response.context["adminform"].form
        field = form.fields["weight_cache_write_long"]
        assert field.initial == Decimal(2)
        assert "Default 2." in field.help_text and "≈1 h" in field.help_text

    @pytest.mark.parametrize("name", ["hardwaresku", "datacenter", "powercontract", "cluster", "deployment",
                                      "powerreading", "lease", "gridintensity", "unpricedclusterhour"])
    def test_viewers_read_every_inventory_list(self, viewer, name):
        assert viewer.get(url(f"{name}_changelist")).status_code == 200


@pytest.mark.django_db
class TestAllocationTables:
    @pytest.mark.parametrize("name", ["clusterhourcost", "costallocation", "unplacedusage", "allocatedhour",
                                      "marginalert"])
    def test_read_only_even_for_superusers(self, admin_client, name):
        assert admin_client.get(url(f"{name}_changelist")).status_code == 200
        assert admin_client.get(url(f"{name}_add")).status_code == 403

    def test_a_row_cannot_be_changed(self, admin_client):
        hour = AllocatedHour.objects.create(hour=utc(2026, 11, 1), rollup_events=3, allocated_at=utc(2026, 11, 2))

        admin_client.post(url("allocatedhour_change", hour.pk), {"rollup_events": 0})

        assert AllocatedHour.objects.get(pk=hour.pk).rollup_events == 3
