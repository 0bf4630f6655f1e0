"""REST endpoints of the fleet inventory and measured power (API.md: Infrastructure and
costs). Admin keys only. Thin: validate, call one service or selector, serialize.

Inventory rows refer to each other by name (a cluster's `datacenter` and `sku`, a
deployment's `cluster`), never by database id.
"""

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import EqualityFilter, InstantField, NextPagination, json_body, on_the_hour
from infra_inventory.allocation import TOKEN_CLASSES, TokenWeights
from infra_inventory.inventory_services import (
    READINGS_MAX, cluster_create, datacenter_create, deployment_create, grid_intensity_create, hardware_sku_create,
    lease_create, power_contract_create, power_readings_record,
)
from infra_inventory.models import (
    Cluster, Datacenter, Deployment, GridIntensity, HardwareSku, Lease, PowerContract, PowerReading,
)
from metering.models import CatalogModel
from metering.services import utc_now

READINGS_BYTES_MAX = 5 * 1024 * 1024
INT_MAX = 2_147_483_647  # the columns are Postgres integers


def by_name(model, kind: str, **kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="name", queryset=model.objects.all(),
                                        error_messages={"does_not_exist": f"No {kind} named '{{value}}'."}, **kwargs)


class InventoryListApi(generics.ListCreateAPIView):
    # GET a paginated list (filtered by equality on `filters`), POST one new row (201)
    # through `service`. Subclasses' docstrings describe them in the OpenAPI schema.
    scopes = ()  # admin only
    pagination_class = NextPagination
    problem_statuses = {"POST": (409,)}  # a name (or a key) already taken
    filter_backends = [EqualityFilter]
    filters: tuple[str, ...] = ()
    filter_lookups = {"datacenter": "datacenter__name", "sku": "sku__name", "cluster": "cluster__name"}
    service = None

    def perform_create(self, serializer):
        serializer.instance = type(self).service(**serializer.validated_data)


# --- hardware SKUs ----------------------------------------------------------------------


def weight_field(token_class: str) -> serializers.DecimalField:
    model_field = HardwareSku._meta.get_field(f"weight_{token_class}")  # its help says why the default
    return serializers.DecimalField(max_digits=8, decimal_places=4, min_value=Decimal(0), default=model_field.default,
                                    normalize_output=True, help_text=model_field.help_text)


class TokenWeightsSerializer(serializers.Serializer):
    """One weight per priced token class (metering.token_classes.CLASSES), each optional."""

    input = weight_field("input")
    cached_input = weight_field("cached_input")
    cache_write = weight_field("cache_write")
    cache_write_long = weight_field("cache_write_long")
    audio_input = weight_field("audio_input")
    output = weight_field("output")
    audio_output = weight_field("audio_output")

    def validate(self, attrs):
        if not any(attrs.values()):
            raise serializers.ValidationError("At least one weight must be above 0: with all at 0, usage on this "
                                              "SKU would carry none of its cost.")
        return TokenWeights(**attrs)

    def to_representation(self, sku: HardwareSku):
        return super().to_representation({c: getattr(sku, f"weight_{c}") for c in TOKEN_CLASSES})


class HardwareSkuSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    vendor = serializers.CharField(max_length=64)
    accelerator = serializers.CharField(max_length=64)
    unit_cost = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal(0),
                                         help_text="USD per accelerator.")
    amortization_months = serializers.IntegerField(min_value=1, max_value=INT_MAX)
    board_watts = serializers.IntegerField(min_value=1, max_value=INT_MAX,
                                           help_text="Per accelerator; estimates power for hours without a reading.")
    embodied_kg_co2e = serializers.DecimalField(max_digits=12, decimal_places=3, min_value=Decimal(0),
                                                default=Decimal(0), normalize_output=True,
                                                help_text="Embodied footprint per accelerator (kgCO2e), amortized "
                                                          "over the amortization months like the cost; optional.")
    token_weights = TokenWeightsSerializer(required=False,
                                           help_text="Weights of the token classes when sharing a cluster-hour's cost, "
                                                     "relative to an uncached prompt token; each optional.")

    def to_representation(self, sku: HardwareSku):
        data = {name: field.to_representation(getattr(sku, name))
                for name, field in self.fields.items() if name != "token_weights"}
        return data | {"token_weights": self.fields["token_weights"].to_representation(sku)}


class HardwareSkuListApi(InventoryListApi):
    """Hardware SKUs: what an accelerator costs, how long it is amortized, what it draws, and how
    its cost is shared among token classes. `?vendor=` filters the list."""

    serializer_class = HardwareSkuSerializer
    filters = ("vendor",)
    queryset = HardwareSku.objects.all()
    service = staticmethod(hardware_sku_create)


# --- datacenters and power contracts -----------------------------------------------------


class DatacenterSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    region = serializers.CharField(max_length=64)
    pue = serializers.DecimalField(max_digits=4, decimal_places=2, min_value=Decimal(1),
                                   help_text="Power usage effectiveness, at least 1.")


class DatacenterListApi(InventoryListApi):
    """Datacenters and their PUE. `?region=` filters the list."""

    serializer_class = DatacenterSerializer
    filters = ("region",)
    queryset = Datacenter.objects.all()
    service = staticmethod(datacenter_create)


class PowerContractSerializer(serializers.Serializer):
    datacenter = by_name(Datacenter, "datacenter")
    effective_from = InstantField(validators=[on_the_hour],
                                  help_text="In force from this hour until the next contract.")
    price_per_kwh = serializers.DecimalField(max_digits=8, decimal_places=4, min_value=Decimal(0),
                                             help_text="USD per kWh.")


@extend_schema_view(post=extend_schema(
    description="A datacenter's price from `effective_from` (on the hour) until the next contract. A second contract "
                "of the same datacenter at the same instant answers 409."))
class PowerContractListApi(InventoryListApi):
    """Power prices per datacenter, effective-dated. `?datacenter=` filters the list."""

    serializer_class = PowerContractSerializer
    filters = ("datacenter",)
    queryset = PowerContract.objects.select_related("datacenter")
    service = staticmethod(power_contract_create)


# --- clusters and deployments ------------------------------------------------------------


class ClusterSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    datacenter = by_name(Datacenter, "datacenter")
    sku = by_name(HardwareSku, "hardware SKU")
    accelerator_count = serializers.IntegerField(min_value=1, max_value=INT_MAX)
    in_service_from = InstantField(validators=[on_the_hour])
    in_service_to = InstantField(validators=[on_the_hour], required=False, allow_null=True, default=None,
                                 help_text="Exclusive; null while in service.")
    ownership = serializers.ChoiceField(choices=Cluster.Ownership.choices, default=Cluster.Ownership.OWNED,
                                        help_text="`owned`: its SKU's cost is amortized; `leased`: it costs the "
                                                  "price of its lease in force (/leases).")

    def validate(self, attrs):
        if attrs["in_service_to"] is not None and attrs["in_service_to"] <= attrs["in_service_from"]:
            raise serializers.ValidationError({"in_service_to": ["Must be after in_service_from."]})
        return attrs


class ClusterListApi(InventoryListApi):
    """Clusters: a number of accelerators of one SKU in one datacenter over a service window
    `[in_service_from, in_service_to)`, owned or leased. `?datacenter=`, `?sku=` and
    `?ownership=` filter the list."""

    serializer_class = ClusterSerializer
    filters = ("datacenter", "sku", "ownership")
    queryset = Cluster.objects.select_related("datacenter", "sku")
    service = staticmethod(cluster_create)


class LeaseSerializer(serializers.Serializer):
    cluster = by_name(Cluster, "cluster", help_text="A leased cluster.")
    provider = serializers.CharField(max_length=64, help_text="Who leases it, e.g. a cloud.")
    effective_from = InstantField(validators=[on_the_hour], help_text="In force from this hour until the cluster's "
                                                                      "next lease.")
    price_per_accelerator_hour = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0),
                                                          help_text="USD per accelerator-hour.")
    includes_power = serializers.BooleanField(default=False, help_text="Power is in the price: no power cost.")
    committed_until = InstantField(required=False, allow_null=True, default=None,
                                   help_text="End of the committed term (paid whether used or not), if any.")

    def validate(self, attrs):
        if attrs["committed_until"] is not None and attrs["committed_until"] <= attrs["effective_from"]:
            raise serializers.ValidationError({"committed_until": ["Must be after effective_from."]})
        return attrs


@extend_schema_view(post=extend_schema(
    description="A leased cluster's price per accelerator-hour from `effective_from` (on the hour) until its next "
                "lease. A lease of an owned cluster answers 422; a second lease of the cluster at the same instant "
                "409. A leased cluster-hour with no lease in force is reported as unpriced, never priced at 0."))
class LeaseListApi(InventoryListApi):
    """Leases of leased clusters, effective-dated. `?cluster=` and `?provider=` filter the list."""

    serializer_class = LeaseSerializer
    filters = ("cluster", "provider")
    queryset = Lease.objects.select_related("cluster")
    service = staticmethod(lease_create)


class GridIntensitySerializer(serializers.Serializer):
    datacenter = by_name(Datacenter, "datacenter")
    effective_from = InstantField(validators=[on_the_hour],
                                  help_text="In force from this hour until the datacenter's next intensity.")
    g_co2e_per_kwh = serializers.DecimalField(max_digits=8, decimal_places=2, min_value=Decimal(0),
                                              normalize_output=True, help_text="gCO2e per kWh of the grid.")


@extend_schema_view(post=extend_schema(
    description="A datacenter's grid intensity from `effective_from` (on the hour) until the next one. A second one "
                "of the same datacenter at the same instant answers 409."))
class GridIntensityListApi(InventoryListApi):
    """Grid carbon intensity per datacenter, effective-dated. `?datacenter=` filters the list."""

    serializer_class = GridIntensitySerializer
    filters = ("datacenter",)
    queryset = GridIntensity.objects.select_related("datacenter")
    service = staticmethod(grid_intensity_create)


class DeploymentSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=128, help_text="A model of the catalog.")
    region = serializers.CharField(max_length=64, help_text="The region of the usage placed by this share.")
    cluster = by_name(Cluster, "cluster")
    share = serializers.DecimalField(max_digits=5, decimal_places=4, max_value=Decimal(1), normalize_output=True,
                                     help_text="In (0, 1]: the part of the model's usage in the region without "
                                               "a cluster that this cluster serves.")

    def validate_model(self, value):
        if not CatalogModel.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"No model named '{value}' in the catalog.")
        return value

    def validate_share(self, value):
        if value <= 0:
            raise serializers.ValidationError("Must be more than 0.")
        return value


class DeploymentListApi(InventoryListApi):
    """Where a model runs in a region: usage reported without a cluster is placed on the
    clusters by these shares. `?model=`, `?region=` and `?cluster=` filter the list."""

    serializer_class = DeploymentSerializer
    filters = ("model", "region", "cluster")
    queryset = Deployment.objects.select_related("cluster")
    service = staticmethod(deployment_create)


# --- power readings ------------------------------------------------------------------------


class PowerReadingSerializer(serializers.Serializer):
    cluster = serializers.CharField(source="cluster.name")
    hour = serializers.DateTimeField()
    it_kwh = serializers.DecimalField(max_digits=14, decimal_places=4)
    received_at = serializers.DateTimeField()


class PowerReadingQuerySerializer(serializers.Serializer):
    cluster = by_name(Cluster, "cluster", required=False)
    start = InstantField(required=False, help_text="Inclusive.")
    end = InstantField(required=False, help_text="Exclusive.")

    def validate(self, attrs):
        if "start" in attrs and "end" in attrs and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["Must be after start."]})
        return attrs


EXAMPLE_READINGS = {"readings": [{"cluster": "iad-h100-a", "hour": "2026-11-01T13:00:00Z", "it_kwh": "812.5"}]}


class PowerReadingsRecordedSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    changed = serializers.IntegerField()


class PowerReadingListApi(APIView):
    scopes = ()  # admin only
    pagination_class = NextPagination

    @extend_schema(parameters=[PowerReadingQuerySerializer], responses={200: PowerReadingSerializer(many=True)},
                   description="Measured IT energy per cluster-hour over `[start, end)`, by cluster and hour.")
    def get(self, request):
        query = PowerReadingQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        readings = PowerReading.objects.select_related("cluster").order_by("cluster__name", "hour")
        if "cluster" in params:
            readings = readings.filter(cluster=params["cluster"])
        if "start" in params:
            readings = readings.filter(hour__gte=params["start"])
        if "end" in params:
            readings = readings.filter(hour__lt=params["end"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(readings, request, view=self)
        return paginator.get_paginated_response(PowerReadingSerializer(page, many=True).data)

    @extend_schema(
        operation_id="power_readings_record",
        request=OpenApiTypes.OBJECT,
        responses={200: PowerReadingsRecordedSerializer},
        examples=[OpenApiExample("a batch", value=EXAMPLE_READINGS, request_only=True),
                  OpenApiExample("recorded", value={"received": 1, "changed": 1}, response_only=True,
                                 status_codes=["200"])],
        description=(
            f"Measured IT energy (kWh) per cluster-hour, at most {READINGS_MAX:,} readings per request (413 beyond). "
            "All or nothing: when any reading is bad, none is recorded and the 422 problem lists each bad one as "
            "`rejected: [{index, errors}]`. Idempotent per (cluster, hour): the same value again changes nothing, "
            "another value replaces it and the hour is allocated again. `changed` counts readings inserted or "
            "replaced."
        ),
    )
    def post(self, request):
        body = json_body(request, bytes_max=READINGS_BYTES_MAX, exact_numbers=True)
        rows = body.get("readings") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise ValidationError({"readings": ['Required: a list of {"cluster", "hour", "it_kwh"} objects.']})
        recorded = power_readings_record(rows=rows, as_of=utc_now())
        return Response({"received": recorded.received, "changed": recorded.changed})
