"""REST endpoints of unit economics (API.md: Infrastructure and costs): unit economics,
margin alerts, and the FOCUS cost export. Thin: validate, call one selector, serialize.
Every figure is rounded as infra_inventory.selectors says, and nowhere else."""

import csv
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from billing.rating.money import money_text as money
from billing.rating.money import unit_price_text
from config.api import InstantField, NextPagination, PeriodQuerySerializer, group_by_keys
from config.documents import CsvRenderer, DocumentApi
from config.openapi import KwhField, MoneyField, UnitPriceField, page_of
from infra_inventory import selectors
from infra_inventory.margins import alert_payload
from infra_inventory.selectors import TOKEN_FIGURES, ClusterDayCost, Figures, month_bounds

RANGE_DAYS_MAX = 400
CURRENCY = "USD"


def kwh_text(value: Decimal | None) -> str | None:
    """Energy as shown: kWh to 3 places (Wh), ROUND_HALF_UP."""
    return None if value is None else f"{value.quantize(Decimal('0.001'), rounding=ROUND_HALF_UP):f}"


def instant_text(value) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class RangeSerializer(PeriodQuerySerializer):
    days_max = RANGE_DAYS_MAX


class UnitEconomicsQuerySerializer(RangeSerializer):
    group_by = serializers.CharField(required=False, default="", allow_blank=True,
                                     help_text="Comma list of " + ", ".join(selectors.ECONOMICS_GROUP_KEYS))

    def validate_group_by(self, value):
        return group_by_keys(value, selectors.ECONOMICS_GROUP_KEYS)


def co2_text(value: Decimal | None) -> str | None:
    """Emissions as shown: kgCO2e to 3 places (g), ROUND_HALF_UP."""
    return kwh_text(value)


def figures_json(figures: Figures, *, reserved_known: bool = True) -> dict:
    return {
        "tokens": figures.tokens, **{name: getattr(figures, name) for name in TOKEN_FIGURES},
        "covered_tokens": figures.covered_tokens, "revenue": money(figures.revenue),
        "usage_revenue": money(figures.usage_revenue), "capacity_revenue": money(figures.capacity_revenue),
        "hardware_cost": money(figures.hardware_cost_shown),
        "power_cost": money(figures.power_cost_shown), "energy_kwh": kwh_text(figures.energy_kwh),
        "gross_margin": money(figures.gross_margin_shown), "margin_percent": money(figures.margin_percent_shown),
        "cost_per_million_tokens": unit_price_text(figures.cost_per_million_tokens),
        "kwh_per_million_tokens": unit_price_text(figures.kwh_per_million_tokens),
        "idle_cost": money(figures.idle_cost_shown), "total_cost": money(figures.total_cost_shown),
        "idle_energy_kwh": kwh_text(figures.idle_energy_kwh),
        "reserved_idle_cost": money(figures.reserved_idle_cost_shown) if reserved_known else None,
        "emissions_kg_co2e": co2_text(figures.emissions_kg_co2e),
        "g_co2e_per_million_tokens": kwh_text(figures.g_co2e_per_million_tokens),
    }


CAPACITY_ROWS = ("Reservations and rentals: units × hours in the range × unit-hour price, one line per term and month "
                 "(and day, grouped by day), as invoiced. A rental shows on rows grouped by customer and fleet keys "
                 "(its cluster's), a reservation on rows grouped by customer, model tier and day (and fleet keys "
                 "when pinned to a cluster); otherwise only in the totals (`capacity_revenue_outside_rows`).")
FLEET_ONLY = "Null unless grouped only by cluster, datacenter, vendor, ownership and day."
RESERVED_ONLY = ("The renting customer's idle rented hours (dedicated capacity), not fleet idle. Null when grouped "
                 "by model or model tier: it belongs to no model.")


class FiguresSerializer(serializers.Serializer):
    tokens = serializers.IntegerField(help_text="All the priced classes below (reasoning is part of output).")
    input_tokens = serializers.IntegerField(help_text="Prompt tokens of no other class: not cached, not written "
                                                      "to the cache, not audio.")
    cached_input_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField(help_text="Written to the prompt cache, short (≈5 min) lifetime.")
    cache_write_long_tokens = serializers.IntegerField(help_text="Written to the prompt cache, long (≈1 h) lifetime.")
    audio_input_tokens = serializers.IntegerField(help_text="Uncached audio prompt tokens.")
    output_tokens = serializers.IntegerField(help_text="Generated text tokens (output less audio).")
    audio_output_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField(help_text="The part of output and audio output spent reasoning: "
                                                          "reported, not counted again in `tokens`.")
    covered_tokens = serializers.IntegerField(help_text="The part of `tokens` a customer reported from a cluster it "
                                                        "rents, in the rented hours: metered, not priced again (the "
                                                        "rental covers it).")
    revenue = MoneyField(allow_null=True, help_text="usage_revenue + capacity_revenue. Null where some of the usage "
                                                    "has no price.")
    usage_revenue = MoneyField(allow_null=True, help_text="What the tokens earn at the unit prices in force, before "
                                                          "contract-level discounts. Null where some of the usage has "
                                                          "no price.")
    capacity_revenue = MoneyField(help_text=CAPACITY_ROWS)
    hardware_cost = MoneyField()
    power_cost = MoneyField()
    energy_kwh = KwhField()
    gross_margin = MoneyField(allow_null=True)
    margin_percent = MoneyField(allow_null=True, help_text="Null without revenue.")
    cost_per_million_tokens = UnitPriceField(allow_null=True, help_text="Null without tokens.")
    kwh_per_million_tokens = UnitPriceField(allow_null=True, help_text="Null without tokens.")
    idle_cost = MoneyField(allow_null=True, help_text=FLEET_ONLY)
    total_cost = MoneyField(allow_null=True, help_text=FLEET_ONLY)
    idle_energy_kwh = KwhField(allow_null=True, help_text=FLEET_ONLY)
    reserved_idle_cost = MoneyField(allow_null=True, help_text=RESERVED_ONLY)
    emissions_kg_co2e = KwhField(help_text="kgCO2e allocated to the usage: facility kWh × grid intensity, plus the "
                                           "embodied share (SCI), to 3 places.")
    g_co2e_per_million_tokens = KwhField(allow_null=True, help_text="Null without tokens.")


class UnitEconomicsRowSerializer(FiguresSerializer):
    """One group: the group keys asked for (only those), then its figures."""

    model = serializers.CharField(required=False)
    model_tier = serializers.CharField(required=False, allow_null=True, help_text="Null while the model had no tier.")
    customer = serializers.CharField(required=False)
    cluster = serializers.CharField(required=False)
    datacenter = serializers.CharField(required=False)
    vendor = serializers.CharField(required=False)
    ownership = serializers.ChoiceField(choices=["owned", "leased"], required=False)
    day = serializers.DateTimeField(required=False, help_text="The day's 00:00 UTC.")


class UnitEconomicsTotalsSerializer(FiguresSerializer):
    """The whole range: idle cost always known."""

    idle_cost = MoneyField()
    total_cost = MoneyField()
    idle_energy_kwh = KwhField()
    total_energy_kwh = KwhField()
    reserved_idle_cost = MoneyField()
    total_emissions_kg_co2e = KwhField()
    idle_emissions_kg_co2e = KwhField()
    cluster_hours = serializers.IntegerField()
    unplaced_tokens = serializers.IntegerField(help_text="Usage that bore no cost: no cluster and no deployment, or "
                                                         "served on a cluster rented to another customer.")
    refused_tokens = serializers.IntegerField(help_text="The part of unplaced_tokens served on a cluster rented to "
                                                        "another customer in a rented hour.")
    unpriced_tokens = serializers.IntegerField(help_text="Served on leased cluster-hours with no lease in force: not "
                                                         "allocated, not priced at 0.")
    unpriced_cluster_hours = serializers.IntegerField()
    hours_not_allocated = serializers.IntegerField()
    capacity_revenue_outside_rows = MoneyField(help_text="The part of capacity_revenue on no row, as the grouping "
                                                         "cannot split it: rows + this = totals.")


def key_json(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


class UnitEconomicsApi(APIView):
    scopes = ("admin",)
    pagination_class = NextPagination

    @extend_schema(
        operation_id="unit_economics", parameters=[UnitEconomicsQuerySerializer],
        responses={200: page_of(
            UnitEconomicsRowSerializer, start=serializers.DateTimeField(), end=serializers.DateTimeField(),
            group_by=serializers.ListField(child=serializers.ChoiceField(choices=selectors.ECONOMICS_GROUP_KEYS)),
            currency=serializers.ChoiceField(choices=[CURRENCY]), idle_cost=MoneyField(),
            reserved_idle_cost=MoneyField(), capacity_revenue=MoneyField(),
            capacity_revenue_outside_rows=MoneyField(), unplaced_tokens=serializers.IntegerField(),
            unpriced_tokens=serializers.IntegerField(), totals=UnitEconomicsTotalsSerializer())},
        description="Tokens, revenue (usage rated at the unit prices in force, before contract-level discounts, and "
                    "capacity: reservations and rentals as their invoice lines; usage a rental covers is not priced "
                    "again), allocated "
                    "hardware and power cost, energy, gross margin and per-1M-token rates over `[start, end)`, one "
                    "row per group; `idle_cost` and `total_cost` on rows grouped only by cluster, datacenter, vendor "
                    "and day. `totals` covers the whole range: allocated + idle + reserved idle = total, to the cent.")
    def get(self, request):
        query = UnitEconomicsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        result = selectors.unit_economics(start=params["start"], end=params["end"], group_by=params["group_by"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(result.rows, request, view=self)
        reserved_known = set(result.group_by) <= selectors.RESERVED_KEYS
        response = paginator.get_paginated_response([
            {**{k: key_json(v) for k, v in row.keys.items()},
             **figures_json(row.figures, reserved_known=reserved_known)}
            for row in page])
        totals = result.totals
        response.data.update({
            "start": instant_text(result.start), "end": instant_text(result.end), "group_by": list(result.group_by),
            "currency": CURRENCY, "idle_cost": money(totals.idle_cost_shown),
            "reserved_idle_cost": money(totals.reserved_idle_cost_shown),
            "capacity_revenue": money(totals.capacity_revenue),
            "capacity_revenue_outside_rows": money(result.capacity_revenue_outside_rows),
            "unplaced_tokens": result.unplaced_tokens,
            "unpriced_tokens": result.unpriced_tokens,
            "totals": {**figures_json(totals), "total_energy_kwh": kwh_text(totals.fleet_energy_kwh),
                       "total_emissions_kg_co2e": co2_text(totals.fleet_emissions_kg_co2e),
                       "idle_emissions_kg_co2e": co2_text(totals.idle_emissions_kg_co2e),
                       "cluster_hours": totals.cluster_hours, "unplaced_tokens": result.unplaced_tokens,
                       "refused_tokens": result.refused_tokens, "unpriced_tokens": result.unpriced_tokens,
                       "unpriced_cluster_hours": result.unpriced_cluster_hours,
                       "hours_not_allocated": result.hours_not_allocated,
                       "capacity_revenue_outside_rows": money(result.capacity_revenue_outside_rows)},
        })
        return response


class MarginAlertQuerySerializer(serializers.Serializer):
    start = InstantField(required=False, help_text="Alerts of days beginning at or after this instant.")
    end = InstantField(required=False, help_text="Alerts of days beginning before this instant.")
    customer_id = serializers.CharField(required=False, max_length=64)


class MarginAlertSerializer(serializers.Serializer):
    """A day a customer's usage of a model tier earned less than its allocated cost."""

    id = serializers.IntegerField()
    day = serializers.DateField()
    customer_id = serializers.CharField()
    model_tier = serializers.CharField()
    tokens = serializers.IntegerField()
    currency = serializers.ChoiceField(choices=[CURRENCY])
    revenue = MoneyField()
    cost = MoneyField()
    gross_margin = MoneyField()
    announced_at = serializers.DateTimeField()


class MarginAlertListApi(APIView):
    scopes = ("admin",)
    pagination_class = NextPagination

    @extend_schema(operation_id="margin_alerts_list", parameters=[MarginAlertQuerySerializer],
                   responses={200: page_of(MarginAlertSerializer)},
                   description="Days on which a customer's usage of a model tier earned less than the hardware and "
                               "power allocated to it; each was announced once as a `margin.negative` webhook.")
    def get(self, request):
        query = MarginAlertQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        alerts = selectors.margin_alerts(**query.validated_data)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(alerts, request, view=self)
        return paginator.get_paginated_response([
            {"id": alert.pk, **alert_payload(alert), "announced_at": instant_text(alert.announced_at)}
            for alert in page])


# --- FOCUS export ---------------------------------------------------------------------

# ConsumedQuantity by priced token class (they sum to it), then its reasoning part.
FOCUS_TOKEN_COLUMNS = {
    "x_InputTokens": "input_tokens", "x_CachedInputTokens": "cached_input_tokens",
    "x_CacheWriteTokens": "cache_write_tokens", "x_CacheWriteLongTokens": "cache_write_long_tokens",
    "x_AudioInputTokens": "audio_input_tokens", "x_OutputTokens": "output_tokens",
    "x_AudioOutputTokens": "audio_output_tokens", "x_ReasoningTokens": "reasoning_tokens",
}
FOCUS_COLUMNS = (
    "BillingAccountId", "BillingAccountName", "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart",
    "ChargePeriodEnd", "BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency",
    "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "PricingCategory", "ResourceId",
    "ResourceName", "ResourceType", "RegionId", "ServiceCategory", "ServiceSubcategory", "ServiceName",
    "ProviderName", "PublisherName", "InvoiceIssuerName", "ConsumedQuantity", "ConsumedUnit", "PricingQuantity",
    "PricingUnit", "SkuId", "x_HardwareCost", "x_PowerCost", "x_EnergyKwh", "x_Revenue", "x_IdleCost",
    "x_AllocatedCost", "x_Datacenter", "x_Vendor", "x_Accelerator", "x_AcceleratorCount", "x_ClusterHours",
    *FOCUS_TOKEN_COLUMNS, "x_Ownership", "x_ReservedIdleCost", "x_EmissionsKgCo2e", "x_AllocatedEmissionsKgCo2e",
    "x_IdleEmissionsKgCo2e",
)


def micro_text(value: Decimal) -> str:
    """Exact: the CSV carries micro-dollars, so its sums are the unit-economics sums."""
    return f"{value.quantize(Decimal('0.000001')):f}"


def focus_record(cost: ClusterDayCost) -> dict:
    """One FOCUS 1.x charge: what one cluster cost the provider over one day. The provider's
    own cost has no list or negotiated price apart from itself, so Billed = Effective =
    List = Contracted cost; it is priced in accelerator-hours and consumed as tokens."""
    cluster, figures = cost.cluster, cost.figures
    seller = settings.SELLER["name"]
    billing_start, billing_end = month_bounds(cost.start)
    total = figures.fleet_hardware_cost + figures.fleet_power_cost
    return {
        "BillingAccountId": slugify(seller), "BillingAccountName": f"{seller} inference fleet",
        "BillingPeriodStart": instant_text(billing_start), "BillingPeriodEnd": instant_text(billing_end),
        "ChargePeriodStart": instant_text(cost.start), "ChargePeriodEnd": instant_text(cost.end),
        "BilledCost": micro_text(total), "EffectiveCost": micro_text(total), "ListCost": micro_text(total),
        "ContractedCost": micro_text(total), "BillingCurrency": CURRENCY, "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": f"{'Lease' if cluster.ownership == 'leased' else 'Hardware amortization'} and power of "
                             f"{cluster.name} "
                             f"({cluster.accelerator_count} × {cluster.sku.accelerator})",
        "ChargeFrequency": "Usage-Based", "PricingCategory": "Standard",
        "ResourceId": cluster.name, "ResourceName": cluster.name, "ResourceType": "Accelerator Cluster",
        "RegionId": cluster.datacenter.region, "ServiceCategory": "AI and Machine Learning",
        "ServiceSubcategory": "Generative AI", "ServiceName": "Model Inference", "ProviderName": seller,
        "PublisherName": seller, "InvoiceIssuerName": seller,
        "ConsumedQuantity": figures.tokens, "ConsumedUnit": "Tokens",
        "PricingQuantity": figures.cluster_hours * cluster.accelerator_count, "PricingUnit": "Accelerator-Hours",
        "SkuId": cluster.sku.name,
        "x_HardwareCost": micro_text(figures.fleet_hardware_cost), "x_PowerCost": micro_text(figures.fleet_power_cost),
        "x_EnergyKwh": micro_text(figures.fleet_energy_kwh),
        "x_Revenue": "" if figures.revenue is None else money(figures.revenue),
        "x_IdleCost": micro_text(figures.idle_cost), "x_AllocatedCost": micro_text(figures.cost),
        "x_Datacenter": cluster.datacenter.name, "x_Vendor": cluster.sku.vendor,
        "x_Accelerator": cluster.sku.accelerator, "x_AcceleratorCount": cluster.accelerator_count,
        "x_ClusterHours": figures.cluster_hours,
        **{column: getattr(figures, name) for column, name in FOCUS_TOKEN_COLUMNS.items()},
        # Emissions in kg to 6 places (mg), exact like the costs: they sum to the unit-economics totals.
        "x_Ownership": cluster.ownership, "x_ReservedIdleCost": micro_text(figures.reserved_idle_cost),
        "x_EmissionsKgCo2e": micro_text(figures.fleet_emissions_kg_co2e),
        "x_AllocatedEmissionsKgCo2e": micro_text(figures.emissions_kg_co2e + figures.reserved_idle_emissions_kg_co2e),
        "x_IdleEmissionsKgCo2e": micro_text(figures.idle_emissions_kg_co2e),
    }


class _Echo:
    def write(self, value: str) -> str:
        return value


def focus_csv_lines(costs):
    writer = csv.DictWriter(_Echo(), fieldnames=FOCUS_COLUMNS, lineterminator="\r\n")
    yield writer.writeheader()
    for cost in costs:
        yield writer.writerow(focus_record(cost))


class FocusExportApi(DocumentApi):
    scopes = ("admin",)
    renderer_classes = [CsvRenderer]

    @extend_schema(operation_id="focus_export", parameters=[RangeSerializer], responses={200: OpenApiTypes.STR},
                   description="The provider's own inference cost over `[start, end)` as a FinOps FOCUS 1.x CSV, one "
                               "charge per cluster and UTC day, streamed. Costs are exact (6 decimals); they sum to "
                               "the unit-economics totals (allocated + idle) of the same range.")
    def get(self, request):
        query = RangeSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["start"], query.validated_data["end"]
        costs = selectors.cluster_day_costs(start=start, end=end)
        return self.document_response(
            focus_csv_lines(costs), streaming=True,
            filename=f"focus-{start.astimezone(UTC):%Y%m%dT%H}-{end.astimezone(UTC):%Y%m%dT%H}.csv")
