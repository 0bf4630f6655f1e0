"""REST endpoints of capacity sold by the hour (API.md: Customers, `reservations` and
`rentals`). Thin: validate, call one service, serialize. A `customer` key reads its own;
only an admin key writes."""

from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import actor_of, customer_visible
from billing.models import Rental, Reservation
from billing.rating.money import unit_price_text
from billing.services.capacity import rental_create, reservation_put
from config.api import InstantField, NextPagination, customer_scope_of, on_the_hour
from config.openapi import UnitPriceField, problem
from infra_inventory.models import Cluster
from metering.models import ModelTierChange
from metering.services import utc_now


def _instant(value):
    return value.isoformat() if value else None


class _TermSerializer(serializers.Serializer):
    """The fields and rule every capacity term has: [starts_at, ends_at) on the hour."""

    id = serializers.IntegerField(read_only=True)
    customer_id = serializers.CharField(read_only=True)
    starts_at = InstantField(validators=[on_the_hour])
    ends_at = InstantField(required=False, allow_null=True, default=None, validators=[on_the_hour],
                           help_text="Exclusive, on the hour; null: open-ended.")
    created_at = serializers.DateTimeField(read_only=True)
    created_by = serializers.CharField(read_only=True)

    def validate(self, attrs):
        if attrs["ends_at"] is not None and attrs["ends_at"] <= attrs["starts_at"]:
            raise serializers.ValidationError({"ends_at": ["Must be after starts_at."]})
        return attrs


def _cluster_known(value):
    if value is not None and not Cluster.objects.filter(name=value).exists():
        raise serializers.ValidationError(f"No cluster '{value}'.")
    return value


class ReservationSerializer(_TermSerializer):
    """A reservation version: `units` of a model tier's provisioned throughput over
    [starts_at, ends_at), at a price per unit-hour."""

    model_tier = serializers.SlugField(max_length=32)
    units = serializers.IntegerField(min_value=1, max_value=2_147_483_647)
    unit_hour_price = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=Decimal(0),
                                               help_text="USD per unit-hour, at most 6 decimals.")
    cluster = serializers.SlugField(max_length=64, required=False, allow_null=True, default=None,
                                    help_text="Pins the capacity to one cluster, in service over the whole term.")

    def validate_model_tier(self, value):
        if not ModelTierChange.objects.filter(tier=value).exists():
            raise serializers.ValidationError(f"No model is in tier '{value}'.")
        return value

    def validate_cluster(self, value):
        return _cluster_known(value)

    def to_representation(self, r: Reservation):
        return {"id": r.pk, "customer_id": r.customer.customer_id, "model_tier": r.model_tier, "units": r.units,
                "unit_hour_price": unit_price_text(r.unit_hour_price), "starts_at": _instant(r.starts_at),
                "ends_at": _instant(r.ends_at), "cluster": r.cluster.name if r.cluster else None,
                "created_at": _instant(r.created_at), "created_by": r.created_by}


class ReservationOutSerializer(ReservationSerializer):
    """As answered: prices as strings with two to six decimals."""

    unit_hour_price = UnitPriceField(help_text="USD per unit-hour.")


class RentalSerializer(_TermSerializer):
    """A whole cluster rented over [starts_at, ends_at) at a price per accelerator-hour."""

    cluster = serializers.SlugField(max_length=64)
    accelerator_hour_price = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=Decimal(0),
                                                      help_text="USD per accelerator-hour, at most 6 decimals.")
    accelerator_count = serializers.IntegerField(read_only=True,
                                                 help_text="The cluster's accelerators when rented: what is billed.")

    def validate_cluster(self, value):
        return _cluster_known(value)

    def to_representation(self, r: Rental):
        return {"id": r.pk, "customer_id": r.customer.customer_id, "cluster": r.cluster.name,
                "accelerator_hour_price": unit_price_text(r.accelerator_hour_price),
                "accelerator_count": r.accelerator_count, "starts_at": _instant(r.starts_at),
                "ends_at": _instant(r.ends_at), "created_at": _instant(r.created_at), "created_by": r.created_by}


class RentalOutSerializer(RentalSerializer):
    accelerator_hour_price = UnitPriceField(help_text="USD per accelerator-hour.")


class _CapacityListApi(APIView):
    """GET lists the customer's terms (`related`, in `ordering`); POST (admin only) makes one
    through `service`. Subclasses carry the schema."""

    scopes = ("customer",)
    pagination_class = NextPagination
    serializer: type[_TermSerializer]
    related: str
    ordering: tuple[str, ...]
    service = None

    def _list(self, request, customer_id):
        customer = customer_visible(request, customer_id)
        terms = getattr(customer, self.related).select_related("customer", "cluster").order_by(*self.ordering)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(terms, request, view=self)
        return paginator.get_paginated_response(self.serializer(page, many=True).data)

    def _create(self, request, customer_id):
        if customer_scope_of(request) is not None:
            self.permission_denied(request, "Only an admin key changes capacity.")
        customer = customer_visible(request, customer_id)
        data = self.serializer(data=request.data)
        data.is_valid(raise_exception=True)
        term = self.service(customer_id=customer.customer_id, **data.validated_data, actor=actor_of(request),
                            as_of=utc_now())
        return Response(self.serializer(term).data, status=status.HTTP_201_CREATED)


class ReservationListApi(_CapacityListApi):
    serializer, related, ordering = ReservationSerializer, "reservations", ("model_tier", "starts_at", "pk")
    service = staticmethod(reservation_put)

    @extend_schema(operation_id="customer_reservations_list", responses={200: ReservationOutSerializer(many=True)},
                   description="Every reservation version of the customer, by model tier and start.")
    def get(self, request, customer_id):
        return self._list(request, customer_id)

    @extend_schema(operation_id="customer_reservations_create", request=ReservationSerializer,
                   responses={201: ReservationOutSerializer, 409: problem(409)},
                   description="Starts a new version of the customer's reservation of the model tier at starts_at; an "
                               "open-ended earlier version is closed there. Overlapping another version, or meeting "
                               "a period already invoiced, answers 409; a cluster out of service over the term 422.")
    def post(self, request, customer_id):
        return self._create(request, customer_id)


class RentalListApi(_CapacityListApi):
    serializer, related, ordering = RentalSerializer, "rentals", ("starts_at", "pk")
    service = staticmethod(rental_create)

    @extend_schema(operation_id="customer_rentals_list", responses={200: RentalOutSerializer(many=True)},
                   description="Every cluster the customer rents or rented, by start.")
    def get(self, request, customer_id):
        return self._list(request, customer_id)

    @extend_schema(operation_id="customer_rentals_create", request=RentalSerializer,
                   responses={201: RentalOutSerializer, 409: problem(409)},
                   description="Rents the whole cluster to the customer. Two rentals of one cluster never overlap "
                               "(409), nor may a rental meet a period already invoiced (409); a cluster out of "
                               "service over the term answers 422.")
    def post(self, request, customer_id):
        return self._create(request, customer_id)
