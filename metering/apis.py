"""REST endpoints of metering (API.md: Usage, Catalog, Customers). Thin: validate,
call one service or selector, serialize."""

import logging
from datetime import timedelta

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from kafka.errors import KafkaError
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import (
    DomainError, EqualityFilter, InstantField, NextCursorPagination, NextPagination, PayloadTooLarge, RuleViolation,
    customer_scope_of, json_body, on_the_hour,
)
from config.openapi import problem
from metering import selectors
from metering.models import CatalogModel, Customer, DeadLetter, ServiceTier
from metering.producer import events_produce
from metering.schemas import EXAMPLE_EVENT, Rules, UsageEventIn, event_validate, json_loads, shown
from metering.services import catalog_model_create, model_tier_change, utc_now

logger = logging.getLogger(__name__)


class IngestUnavailable(DomainError):
    code = "ingest_unavailable"
    status = 503
    title = "Events could not be handed to Kafka"


class RejectedEventSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Its place in the batch, from 0.")
    event_id = serializers.CharField(allow_null=True, help_text="Null when the event had no string event_id.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="Field → messages.")


class IngestedSerializer(serializers.Serializer):
    """At least one event was accepted."""

    accepted = serializers.IntegerField()
    rejected = RejectedEventSerializer(many=True)


class UsageEventIngestApi(APIView):
    scopes = ("ingest",)
    throttle_scope = "ingest"

    @extend_schema(
        operation_id="usage_events_ingest",
        request=OpenApiTypes.OBJECT,
        responses={202: IngestedSerializer, 503: problem(503)},
        examples=[
            OpenApiExample("one event", value=EXAMPLE_EVENT, request_only=True),
            OpenApiExample("a batch", value={"events": [EXAMPLE_EVENT]}, request_only=True),
            OpenApiExample("the provider's usage object in place of token fields", request_only=True, value={
                **{k: v for k, v in EXAMPLE_EVENT.items() if not k.endswith("_tokens")},
                "provider_usage": {"format": "anthropic.messages", "usage": {
                    "input_tokens": 20, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 786,
                    "output_tokens": 412, "cache_creation": {"ephemeral_5m_input_tokens": 786,
                                                             "ephemeral_1h_input_tokens": 0}}}}),
            OpenApiExample("accepted", value={"accepted": 1, "rejected": []}, response_only=True, status_codes=["202"]),
        ],
        description=(
            "One usage event (DESIGN.md §1), or `{\"events\": [...]}` with at most 1,000 events and 5 MiB. "
            "Token fields (totals `input_tokens`, `output_tokens` and their parts `cached_input_tokens`, "
            "`cache_write_tokens`, `cache_write_long_tokens`, `audio_input_tokens`, `audio_output_tokens`, "
            "`reasoning_tokens`), or `provider_usage` (`openai.chat`, `openai.responses`, `anthropic.messages`, "
            "`gemini`) in their place. "
            "Valid events are acknowledged by Kafka (acks=all) before the 202; invalid ones are listed "
            "with field errors and never produced. Repeats are accepted here and deduplicated by the ledger."
        ),
    )
    def post(self, request):
        body = json_body(request, bytes_max=settings.USAGE_BATCH_BYTES_MAX, loads=json_loads)
        is_batch = isinstance(body, dict) and isinstance(body.get("events"), list) and "event_id" not in body
        events = body["events"] if is_batch else [body]
        if len(events) > settings.USAGE_BATCH_EVENTS_MAX:
            raise PayloadTooLarge(f"A batch holds at most {settings.USAGE_BATCH_EVENTS_MAX} events, got {len(events)}.")
        arrived_at = utc_now()
        rules = Rules(arrived_at=arrived_at, lateness=timedelta(days=settings.USAGE_LATENESS_DAYS))
        catalog = selectors.catalog_current()
        valid, rejected = [], []
        for index, event in enumerate(events):
            verdict = event_validate(event, catalog=catalog, rules=rules)
            if isinstance(verdict, UsageEventIn):
                valid.append(event)
            else:
                event_id = event.get("event_id") if isinstance(event, dict) else None
                event_id = shown(event_id) if isinstance(event_id, str) else None  # echoed: must render
                rejected.append({"index": index, "event_id": event_id, "errors": verdict.errors})
        if not valid:
            raise RuleViolation("No event was accepted.", errors=rejected[0]["errors"] if not is_batch else None,
                                extra={"rejected": rejected})
        try:
            events_produce(events=valid, arrived_at=arrived_at)
        except KafkaError as exc:
            logger.error("usage events not acknowledged by Kafka: %s", exc)
            raise IngestUnavailable("Kafka did not acknowledge the events; nothing was accepted. Retry later.")
        return Response({"accepted": len(valid), "rejected": rejected}, status=status.HTTP_202_ACCEPTED)


class DeadLetterSerializer(serializers.ModelSerializer):
    raw_base64 = serializers.CharField(source="raw")
    source = serializers.SerializerMethodField()

    class Meta:
        model = DeadLetter
        fields = ["id", "kind", "reason", "errors", "customer_id", "event_id", "payload", "existing_payload",
                  "raw_base64", "received_at", "recorded_at", "source"]

    def get_source(self, obj) -> dict:
        return {"topic": obj.source_topic, "partition": obj.source_partition,
                "offset": obj.source_offset, "index": obj.source_index}


class DeadLetterListApi(generics.ListAPIView):
    """Rejected and conflicting events, newest first; `?kind=`, `?reason=` and `?customer_id=`
    filter the list."""

    scopes = ("admin",)
    serializer_class = DeadLetterSerializer
    pagination_class = NextCursorPagination
    filter_backends = [EqualityFilter]
    filters = ("kind", "reason", "customer_id")
    queryset = DeadLetter.objects.all()


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["customer_id", "name", "currency", "email", "created_at"]


class CustomerListApi(generics.ListCreateAPIView):
    scopes = ("admin",)
    serializer_class = CustomerSerializer
    queryset = Customer.objects.all()


class CustomerDetailApi(generics.RetrieveUpdateAPIView):
    scopes = ("customer",)
    serializer_class = CustomerSerializer
    lookup_field = "customer_id"
    http_method_names = ["get", "patch", "options"]

    def get_queryset(self):
        bound = customer_scope_of(self.request)
        return Customer.objects.filter(customer_id=bound) if bound else Customer.objects.all()

    def patch(self, request, *args, **kwargs):
        if customer_scope_of(request) is not None:
            raise PermissionDenied("A customer key is read-only.")
        return super().patch(request, *args, **kwargs)


class CatalogModelSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    tier = serializers.SlugField(max_length=32, help_text="On create: the model tier from the beginning.")

    def validate_name(self, value):
        if CatalogModel.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"Model '{value}' is already in the catalog.")
        return value

    def to_representation(self, model):
        changes, now = list(model.tier_changes.all()), utc_now()
        current = [c.tier for c in changes if c.effective_from <= now]
        return {"name": model.name, "tier": current[-1] if current else None,
                "tier_history": [{"tier": c.tier, "effective_from": c.effective_from.isoformat()} for c in changes]}


class CatalogModelListApi(APIView):
    scopes = ("admin",)
    pagination_class = NextPagination

    @extend_schema(responses={200: CatalogModelSerializer(many=True)})
    def get(self, request):
        models = CatalogModel.objects.prefetch_related("tier_changes")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(models, request, view=self)
        return paginator.get_paginated_response(CatalogModelSerializer(page, many=True).data)

    @extend_schema(request=CatalogModelSerializer, responses={201: CatalogModelSerializer})
    def post(self, request):
        data = CatalogModelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = catalog_model_create(**data.validated_data)
        return Response(CatalogModelSerializer(model).data, status=status.HTTP_201_CREATED)


class ServiceTierField(serializers.SlugField):
    """The name of a service tier of the catalog."""

    def __init__(self, **kwargs):
        super().__init__(max_length=16, **kwargs)

    def to_internal_value(self, data):
        name = super().to_internal_value(data)
        if not ServiceTier.objects.filter(name=name).exists():
            raise serializers.ValidationError(f"No service tier '{name}' in the catalog.")
        return name


class ServiceTierSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServiceTier
        fields = ["name", "description", "created_at"]


class ServiceTierListApi(generics.ListCreateAPIView):
    """The service tiers events may name and price books price; `standard`, `batch`,
    `priority`, `flex` and `provisioned` exist from the start. Reading needs any key
    (a gateway checks what it may send); adding one needs `admin`."""

    serializer_class = ServiceTierSerializer
    pagination_class = NextPagination
    queryset = ServiceTier.objects.all()

    @property
    def scopes(self):
        return ("admin",) if self.request.method == "POST" else ("ingest", "customer")


class TierChangeSerializer(serializers.Serializer):
    tier = serializers.SlugField(max_length=32)
    effective_from = InstantField(help_text="On an hour boundary: usage is priced per hour.",
                                  validators=[on_the_hour])


class ModelTierChangeApi(APIView):
    scopes = ("admin",)

    @extend_schema(request=TierChangeSerializer, responses={201: CatalogModelSerializer, 409: problem(409)},
                   description="Move a model to another tier from an instant on; earlier usage keeps its tier.")
    def post(self, request, name):
        get_object_or_404(CatalogModel, name=name)
        data = TierChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = model_tier_change(model_name=name, **data.validated_data)
        return Response(CatalogModelSerializer(model).data, status=status.HTTP_201_CREATED)
