"""REST endpoints of usage adjustments (API.md: Usage, `POST|GET /usage-adjustments`)."""

from django.conf import settings
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.services.spend import spends_refresh
from config.api import DomainError, InstantField, NextCursorPagination, RuleViolation, customer_scope_of, json_body
from config.metrics.counters import usage_adjustment_counted
from config.openapi import page_of, problem
from metering import selectors
from metering.adjustment_rules import EXAMPLE_ADJUSTMENT, UsageAdjustmentIn, adjustment_validate
from metering.adjustments import adjustment_apply, rest_source
from metering.consumer.steps import AdjustmentAccepted
from metering.models import UsageAdjustment
from metering.services import dead_letters_record, utc_now
from metering.token_classes import FIELDS as TOKEN_FIELDS


class AdjustmentConflict(DomainError):
    code = "conflicting_adjustment"
    status = 409
    title = "Another adjustment was accepted under this adjustment_id"


class AdjustmentRefused(DomainError):
    status = 422
    title = "The event cannot take this adjustment"

    def __init__(self, detail: str, *, code: str):
        super().__init__(detail, errors={"event_id": [detail]})
        self.code = code


def adjustment_json(row: UsageAdjustment) -> dict:
    return {
        "id": row.pk, "adjustment_id": row.adjustment_id, "customer_id": row.customer_id, "event_id": row.event_id,
        "action": row.action, "replacement": row.replacement, "reason": row.reason, "actor": row.actor,
        "sequence": row.sequence, "event_timestamp": row.occurred_at.isoformat(),
        "recorded_at": row.recorded_at.isoformat(),
        "difference": {"events": row.events, **{name: getattr(row, name) for name in TOKEN_FIELDS}},
    }


class AdjustmentSerializer(serializers.Serializer):
    """An accepted adjustment. `difference` is what it changed in the event's hour."""

    id = serializers.IntegerField()
    adjustment_id = serializers.CharField()
    customer_id = serializers.CharField()
    event_id = serializers.CharField()
    action = serializers.ChoiceField(choices=UsageAdjustment.Action.choices)
    replacement = serializers.DictField(child=serializers.IntegerField(), allow_null=True)
    reason = serializers.CharField()
    actor = serializers.CharField()
    sequence = serializers.IntegerField(help_text="1 for the event's first adjustment, then 2, ...")
    event_timestamp = serializers.DateTimeField(help_text="The adjusted event's timestamp: where it applies.")
    recorded_at = serializers.DateTimeField()
    difference = serializers.DictField(child=serializers.IntegerField(),
                                       help_text="events (-1 for a void, 0 for a replacement) and each token field.")


class AdjustmentQuerySerializer(serializers.Serializer):
    customer_id = serializers.CharField(required=False, max_length=64)
    start = InstantField(required=False, help_text="Adjusted events served from (inclusive).")
    end = InstantField(required=False, help_text="Adjusted events served before (exclusive).")


class UsageAdjustmentApi(APIView):
    pagination_class = NextCursorPagination

    @property
    def scopes(self):
        return ("ingest",) if self.request.method == "POST" else ("customer",)

    @extend_schema(
        operation_id="usage_adjustments_create",
        request=OpenApiTypes.OBJECT,
        responses={201: AdjustmentSerializer, 200: AdjustmentSerializer, 409: problem(409), 422: problem(422)},
        examples=[OpenApiExample("replace an event's token fields", value=EXAMPLE_ADJUSTMENT, request_only=True),
                  OpenApiExample("void an event", request_only=True, value={
                      **{k: v for k, v in EXAMPLE_ADJUSTMENT.items() if k != "replacement"}, "action": "void",
                      "adjustment_id": "adj-2026-11-000018", "reason": "test traffic billed by mistake"})],
        description=(
            "Void an accepted event or replace its token fields (DESIGN.md §6). `replacement` states every token "
            "field as it should be (`input_tokens` and `output_tokens` required, parts 0 unless given). "
            "`201` with the adjustment; the same `adjustment_id` again answers `200` with the first one, another "
            "payload under it `409` (kept as a dead letter); an event the ledger has not accepted (yet: events "
            "reach it within seconds of their `202`), or already voided, `422`. The same object may be produced "
            "to the usage topic, keyed by `customer_id`, behind the events it corrects."
        ),
    )
    def post(self, request):
        body = json_body(request, bytes_max=settings.USAGE_BATCH_BYTES_MAX)
        verdict = adjustment_validate(body, catalog=selectors.catalog_current())
        if not isinstance(verdict, UsageAdjustmentIn):
            raise RuleViolation("The adjustment breaks a rule.", errors=verdict.errors, extra={"reason": verdict.reason})
        source = rest_source()
        with transaction.atomic():
            outcome = adjustment_apply(adjustment=verdict, source=source, actor=request.auth.actor, as_of=utc_now())
            if outcome.status == "applied":  # the customer's live balance, in the same transaction
                spends_refresh(customer_ids=[verdict.customer_id], as_of=utc_now())
        usage_adjustment_counted(path="rest", outcome=outcome.status)
        if outcome.status == "conflict":
            dead_letters_record(rejected=[outcome.rejection(AdjustmentAccepted(verdict, source, utc_now(), None))])
            raise AdjustmentConflict(outcome.message, errors={"adjustment_id": [outcome.message]},
                                     extra={"existing": adjustment_json(outcome.adjustment)})
        if outcome.status == "refused":
            raise AdjustmentRefused(outcome.message, code=outcome.reason)
        return Response(adjustment_json(outcome.adjustment),
                        status=status.HTTP_201_CREATED if outcome.status == "applied" else status.HTTP_200_OK)

    @extend_schema(parameters=[AdjustmentQuerySerializer], responses={200: page_of(AdjustmentSerializer)},
                   description="Adjustments, newest first; `admin`, or a `customer` key for its own.")
    def get(self, request):
        query = AdjustmentQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = UsageAdjustment.objects.all()
        bound = customer_scope_of(request)
        customer_id = bound or query.validated_data.get("customer_id")
        if customer_id is not None:
            rows = rows.filter(customer_id=customer_id)
        if bound is not None and query.validated_data.get("customer_id", bound) != bound:
            rows = rows.none()
        if "start" in query.validated_data:
            rows = rows.filter(occurred_at__gte=query.validated_data["start"])
        if "end" in query.validated_data:
            rows = rows.filter(occurred_at__lt=query.validated_data["end"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response([adjustment_json(row) for row in page])
