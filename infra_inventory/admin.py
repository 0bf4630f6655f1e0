"""Admin for finance staff: the fleet inventory and measured power, and the cost allocation.

- The inventory (SKUs, datacenters, power contracts, grid intensities, clusters, leases,
  deployments) is added and changed by whoever holds the model permissions: superusers and
  finance managers (billing/permissions.py); finance viewers read it. A lease is only for a
  leased cluster, as in the API.
- Power readings are written only through `power_readings_record`, the service behind
  `POST /power-readings`: one on the form, or many by CSV import on the list. So the admin
  keeps the API's rules, and a changed value gets a new `received_at`, which makes the
  allocator allocate its hour again. Readings are not deleted here: a deleted reading
  would not make its hour stale.
- The allocation tables are a projection the allocator rebuilds, and margin alerts are what
  was announced: read-only for everyone.
- Every save of an inventory row sets its `updated_at`, so the hours it prices are
  allocated again by the next scheduled run (services.hours_stale) back as far as the task
  looks (USAGE_LATENESS_DAYS + 1 days); older hours by `manage.py allocate_costs`. A form
  saved unchanged writes nothing, so it re-allocates nothing. The key of an effective-dated
  row (its cluster or datacenter and `effective_from`) and a deployment's cluster are not edited:
  another start is another version, and an edit that moved it would leave the hours it
  no longer prices unseen. A deleted lease, power contract, grid intensity or deployment
  leaves no row to compare, so deleting one touches its cluster or datacenter instead,
  whose hours are then all allocated again.
"""

import csv
import io
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from billing.admin.common import ReadOnlyAdmin
from config.api import DomainError, is_on_the_hour
from infra_inventory.inventory_services import (
    READING_FIELDS, READINGS_MAX, PowerReadingsRejected, power_readings_check, power_readings_record,
)
from infra_inventory.allocation import TOKEN_CLASSES
from infra_inventory.models import (
    TOKEN_COLUMNS, AllocatedHour, Cluster, ClusterHourCost, CostAllocation, Datacenter, Deployment, GridIntensity,
    HardwareSku, Lease, MarginAlert, PowerContract, PowerReading, UnplacedUsage, UnpricedClusterHour,
)
from metering.models import CatalogModel

CSV_BYTES_MAX = 5 * 1024 * 1024
ROW_ERRORS_SHOWN = 200
NOT_REALLOCATED = ("The hours this change prices are allocated again by the next scheduled allocation, back "
                   "{days} days; for older hours run `manage.py allocate_costs --from … --to …`.")


# --- the inventory ------------------------------------------------------------------------


class OnTheHourForm(forms.ModelForm):
    """Instants that start or end a priced period fall on an hour boundary, as in the API."""

    hour_fields: tuple[str, ...] = ()

    def clean(self):
        cleaned = super().clean()
        for name in self.hour_fields:
            value = cleaned.get(name)
            if value is not None and not is_on_the_hour(value):
                self.add_error(name, "Must be on an hour boundary (UTC): costs are allocated per hour.")
        return cleaned


class InventoryAdmin(admin.ModelAdmin):
    form = OnTheHourForm
    key_fields: tuple[str, ...] = ()  # read-only once created (see the module docstring)

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *(self.key_fields if obj is not None else ())]

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return  # a new updated_at would re-allocate hours for nothing
        super().save_model(request, obj, form, change)
        messages.warning(request, NOT_REALLOCATED.format(days=settings.USAGE_LATENESS_DAYS + 1))

    def owner_touched(self, obj) -> None:
        """After a delete: the row that owns `obj` counts as changed (see the module docstring)."""

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self.owner_touched(obj)

    def delete_queryset(self, request, queryset):
        deleted = list(queryset)
        super().delete_queryset(request, queryset)
        for obj in deleted:
            self.owner_touched(obj)


class ClusterOwnedAdmin(InventoryAdmin):
    def owner_touched(self, obj) -> None:
        Cluster.objects.filter(pk=obj.cluster_id).update(updated_at=timezone.now())


class DatacenterOwnedAdmin(InventoryAdmin):
    def owner_touched(self, obj) -> None:
        Datacenter.objects.filter(pk=obj.datacenter_id).update(updated_at=timezone.now())


WEIGHT_FIELDS = [f"weight_{token_class}" for token_class in TOKEN_CLASSES]


@admin.register(HardwareSku)
class HardwareSkuAdmin(InventoryAdmin):
    list_display = ["name", "vendor", "accelerator", "unit_cost", "amortization_months", "board_watts",
                    "embodied_kg_co2e", *WEIGHT_FIELDS]
    list_filter = ["vendor"]
    search_fields = ["name", "vendor", "accelerator"]
    fieldsets = [
        (None, {"fields": ["name", "vendor", "accelerator", "unit_cost", "amortization_months", "board_watts",
                           "embodied_kg_co2e"]}),
        ("Token weights", {"fields": WEIGHT_FIELDS, "description": (
            "How a cluster-hour's cost is shared among the token classes it served, relative to an uncached "
            "prompt token (DESIGN.md §4). Each field says why its default is what it is.")}),
    ]


@admin.register(Datacenter)
class DatacenterAdmin(InventoryAdmin):
    list_display = ["name", "region", "pue"]
    list_filter = ["region"]
    search_fields = ["name", "region"]


class EffectiveFromForm(OnTheHourForm):
    """An effective-dated version (power contract, grid intensity): from an hour on."""

    hour_fields = ("effective_from",)


@admin.register(PowerContract)
class PowerContractAdmin(DatacenterOwnedAdmin):
    form = EffectiveFromForm
    key_fields = ("datacenter", "effective_from")
    list_display = ["datacenter", "effective_from", "price_per_kwh"]
    list_filter = ["datacenter"]
    list_select_related = ["datacenter"]
    date_hierarchy = "effective_from"


class ClusterForm(OnTheHourForm):
    hour_fields = ("in_service_from", "in_service_to")


@admin.register(GridIntensity)
class GridIntensityAdmin(DatacenterOwnedAdmin):
    form = EffectiveFromForm
    key_fields = ("datacenter", "effective_from")
    list_display = ["datacenter", "effective_from", "g_co2e_per_kwh"]
    list_filter = ["datacenter"]
    list_select_related = ["datacenter"]
    date_hierarchy = "effective_from"


@admin.register(Cluster)
class ClusterAdmin(InventoryAdmin):
    form = ClusterForm
    list_display = ["name", "datacenter", "sku", "accelerator_count", "ownership", "in_service_from", "in_service_to"]
    list_filter = ["ownership", "datacenter", "sku", ("in_service_to", admin.EmptyFieldListFilter)]
    list_select_related = ["datacenter", "sku"]
    search_fields = ["name"]


class LeaseForm(OnTheHourForm):
    hour_fields = ("effective_from",)

    def clean(self):
        cleaned = super().clean()
        cluster = cleaned.get("cluster")
        if cluster is not None and cluster.ownership != Cluster.Ownership.LEASED:
            self.add_error("cluster", f"{cluster.name} is owned: only a leased cluster has a lease.")
        return cleaned


@admin.register(Lease)
class LeaseAdmin(ClusterOwnedAdmin):
    form = LeaseForm
    key_fields = ("cluster", "effective_from")
    list_display = ["cluster", "provider", "effective_from", "price_per_accelerator_hour", "includes_power",
                    "committed_until"]
    list_filter = ["provider", "includes_power", "cluster"]
    list_select_related = ["cluster"]
    date_hierarchy = "effective_from"


def catalog_choices():
    return [(name, name) for name in CatalogModel.objects.values_list("name", flat=True)]


class DeploymentForm(OnTheHourForm):
    model = forms.ChoiceField(choices=catalog_choices, help_text="A model of the catalog.")


@admin.register(Deployment)
class DeploymentAdmin(ClusterOwnedAdmin):
    form = DeploymentForm
    key_fields = ("cluster",)  # model and region: the hours it matters in are its cluster's either way
    list_display = ["model", "region", "cluster", "share"]
    list_filter = ["model", "region", "cluster"]
    list_select_related = ["cluster"]


# --- power readings -------------------------------------------------------------------------


class PowerReadingForm(forms.ModelForm):
    """One reading, checked by the rules of the API's batches; on change only the value."""

    class Meta:
        model = PowerReading
        fields = ["cluster", "hour", "it_kwh"]

    def validate_unique(self):
        """A reading of a cluster-hour that has one replaces it (upsert), as in the API."""

    def validate_constraints(self):
        """The service's rules cover them, with clearer messages."""

    def reading_row(self) -> dict | None:
        """The reading as the service takes it, or None while a field is still invalid."""
        data, instance = self.cleaned_data, self.instance
        cluster = data.get("cluster") if "cluster" in self.fields else instance.cluster
        hour = data.get("hour") if "hour" in self.fields else instance.hour
        if cluster is None or hour is None or data.get("it_kwh") is None:
            return None
        return {"cluster": cluster.name, "hour": hour, "it_kwh": data["it_kwh"]}

    def clean(self):
        cleaned = super().clean()
        if (row := self.reading_row()) is not None:
            _, rejected = power_readings_check([row])
            for field, errors in (rejected[0]["errors"] if rejected else {}).items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


class CsvImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text=f"UTF-8, a header row naming the columns cluster, hour, it_kwh, then one reading per row: the "
                  f"cluster's name, the hour it covers as an RFC 3339 instant on the hour (2026-11-01T13:00:00Z; "
                  f"without an offset, UTC), and the measured IT energy in kWh (812.5). At most {READINGS_MAX:,} "
                  f"rows. All or nothing: when any row is bad, none is imported.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > CSV_BYTES_MAX:
            raise ValidationError(f"The file is {upload.size:,} bytes; at most {CSV_BYTES_MAX:,} are accepted.")
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"The file is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
        self.rows, self.lines = readings_from_csv(text)
        return upload


def readings_from_csv(text: str) -> tuple[list[dict], list[int]]:
    """Rows as the service takes them, and the line each starts on (for the error report)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
    if missing := [name for name in READING_FIELDS if name not in header]:
        raise ValidationError(f"The header row must name the columns {', '.join(READING_FIELDS)}; "
                              f"{', '.join(missing)} missing (found: {', '.join(header) or 'nothing'}).")
    reader.fieldnames = header
    rows, lines = [], []
    for record in reader:  # blank lines are skipped
        if len(rows) == READINGS_MAX:
            raise ValidationError(f"At most {READINGS_MAX:,} readings per file: split it and import each part.")
        rows.append({name: record.get(name) for name in READING_FIELDS})
        lines.append(reader.line_num)  # where the row ends: its line, unless a quoted value spans lines
    if not rows:
        raise ValidationError("The file holds no reading under its header row.")
    return rows, lines





@admin.register(PowerReading)
class PowerReadingAdmin(admin.ModelAdmin):
    form = PowerReadingForm
    list_display = ["cluster", "hour", "it_kwh", "received_at"]
    list_filter = ["cluster", "cluster__datacenter", "received_at"]
    list_select_related = ["cluster"]
    search_fields = ["=cluster__name"]
    date_hierarchy = "hour"
    show_full_result_count = False

    change_list_template = "admin/infra_inventory/powerreading/change_list.html"

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return ["received_at"] if obj is None else ["cluster", "hour", "received_at"]

    def get_fields(self, request, obj=None):
        return ["cluster", "hour", "it_kwh"] + ([] if obj is None else ["received_at"])

    def save_model(self, request, obj, form, change):
        row = form.reading_row()
        recorded = power_readings_record(rows=[row], as_of=timezone.now())
        saved = PowerReading.objects.get(cluster__name=row["cluster"], hour=row["hour"])
        obj.pk, obj.it_kwh, obj.received_at = saved.pk, saved.it_kwh, saved.received_at
        if change and not recorded.changed:
            messages.info(request, "The value is the same as before: nothing changed.")

    def can_import(self, request) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = {"can_import": self.can_import(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_import"
        return [path("import/", self.admin_site.admin_view(self.import_view), name=name), *super().get_urls()]

    def import_view(self, request):
        """Upload a CSV of readings; all are recorded, or none with the rejected rows listed."""
        if not self.can_import(request):
            raise PermissionDenied
        form = CsvImportForm(request.POST or None, request.FILES or None)
        row_errors = []
        if request.method == "POST" and form.is_valid():
            try:
                recorded = power_readings_record(rows=form.rows, as_of=timezone.now())
            except PowerReadingsRejected as exc:
                rejected = exc.extra.get("rejected") or [{"index": None, "errors": exc.errors}]
                row_errors = [{"line": form.lines[r["index"]] if r["index"] is not None else "—",
                               "errors": r["errors"]} for r in rejected]
                messages.error(request, f"{len(rejected):,} of {len(form.rows):,} rows were rejected, so nothing "
                                        "was imported. Correct them and upload the file again.")
            except DomainError as exc:
                form.add_error(None, exc.detail)
            else:
                messages.success(request, f"Readings received: {recorded.received:,}; new or changed: "
                                          f"{recorded.changed:,}; already recorded: "
                                          f"{recorded.received - recorded.changed:,}.")
                return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
        return TemplateResponse(request, "admin/infra_inventory/powerreading/import.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "title": "Import power readings",
            "form": form, "row_errors": row_errors[:ROW_ERRORS_SHOWN],
            "row_errors_hidden": max(0, len(row_errors) - ROW_ERRORS_SHOWN),
        })


# --- the allocation projection ----------------------------------------------------------------


@admin.register(ClusterHourCost)
class ClusterHourCostAdmin(ReadOnlyAdmin):
    list_display = ["hour", "cluster", "hardware_cost", "power_cost", "it_kwh", "energy_kwh", "power_estimated",
                    "weighted_tokens", "emissions_kg_co2e", "grid_intensity_missing", "rented_to"]
    list_filter = ["cluster", "power_estimated", "grid_intensity_missing"]
    list_select_related = ["cluster"]
    date_hierarchy = "hour"
    show_full_result_count = False


@admin.register(CostAllocation)
class CostAllocationAdmin(ReadOnlyAdmin):
    list_display = ["hour", "cluster", "customer_id", "model", "service_tier", *TOKEN_COLUMNS, "weighted_tokens",
                    "hardware_cost", "power_cost", "energy_kwh", "emissions_kg_co2e", "reserved_idle"]
    list_filter = ["reserved_idle", "cluster", "service_tier", "model"]
    list_select_related = ["cluster"]
    search_fields = ["=customer_id", "=model"]
    date_hierarchy = "hour"
    show_full_result_count = False


@admin.register(UnplacedUsage)
class UnplacedUsageAdmin(ReadOnlyAdmin):
    list_display = ["hour", "customer_id", "model", "region", "cluster", "reason", "tokens"]
    list_filter = ["reason", "model", "region"]
    search_fields = ["=customer_id"]
    date_hierarchy = "hour"
    show_full_result_count = False


@admin.register(UnpricedClusterHour)
class UnpricedClusterHourAdmin(ReadOnlyAdmin):
    """Leased cluster-hours with no lease in force: add the lease, then allocate the hours again."""

    list_display = ["hour", "cluster", "reason", "tokens"]
    list_filter = ["cluster"]
    list_select_related = ["cluster"]
    date_hierarchy = "hour"
    show_full_result_count = False


@admin.register(AllocatedHour)
class AllocatedHourAdmin(ReadOnlyAdmin):
    list_display = ["hour", "rollup_events", "allocated_at"]
    date_hierarchy = "hour"
    show_full_result_count = False


@admin.register(MarginAlert)
class MarginAlertAdmin(ReadOnlyAdmin):
    """Announced once with the figures of the day they were found (infra_inventory.margins)."""

    list_display = ["day", "customer_id", "model_tier", "tokens", "revenue", "cost", "announced_at"]
    list_filter = ["model_tier"]
    search_fields = ["=customer_id"]
    date_hierarchy = "day"
