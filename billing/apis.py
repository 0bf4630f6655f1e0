"""REST endpoints of billing (API.md: Usage amounts, Catalog, prices, customers). Thin:
validate, call one service or selector, serialize."""

from decimal import Decimal

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors
from billing.models import Contract, CreditEntry, InvoiceLine, PriceBook, TokenClass
from billing.rating import RatedInvoice
from billing.rating.money import money_text as money
from billing.rating.money import unit_price_text
from billing.services.contracts import contract_put
from billing.services.credits import credit_grant
from billing.services.price_books import price_book_create
from config.api import (
    InstantField, NextPagination, PeriodField, PeriodQuerySerializer, customer_scope_of, group_by_keys, on_the_hour,
)
from config.openapi import MoneyField, UnitPriceField, page_of, problem
from metering.apis import ServiceTierField
from metering.models import Customer, ModelTierChange
from metering.services import utc_now


def actor_of(request) -> str:
    return request.auth.actor


def customer_visible(request, customer_id: str) -> Customer:
    """The customer, or 404 when it does not exist or the key belongs to another one."""
    bound = customer_scope_of(request)
    if bound is not None and bound != customer_id:
        raise NotFound("No such customer.")
    return get_object_or_404(Customer, customer_id=customer_id)


# --- usage -----------------------------------------------------------------------


class UsageQuerySerializer(PeriodQuerySerializer):
    customer_id = serializers.CharField(required=False, max_length=64)
    group_by = serializers.CharField(required=False, default="",
                                     help_text="Comma list of " + ", ".join(selectors.USAGE_GROUP_KEYS))

    def validate_group_by(self, value):
        keys = group_by_keys(value, selectors.USAGE_GROUP_KEYS)
        if "hour" in keys and "day" in keys:
            raise serializers.ValidationError("Group by hour or by day, not both.")
        return keys


class UsageRowSerializer(serializers.Serializer):
    """Usage of one customer and group: the group keys asked for (only those), then the sums."""

    customer_id = serializers.CharField()
    model = serializers.CharField(required=False)
    model_tier = serializers.CharField(required=False, allow_null=True, help_text="Null while the model had no tier.")
    service_tier = serializers.CharField(required=False)
    region = serializers.CharField(required=False, help_text="Empty for events that named none.")
    cluster = serializers.CharField(required=False, help_text="Empty for events that named none.")
    hour = serializers.DateTimeField(required=False)
    day = serializers.DateTimeField(required=False, help_text="The day's 00:00 UTC.")
    events = serializers.IntegerField()
    input_tokens = serializers.IntegerField(help_text="All prompt tokens, cached and cache-written ones included.")
    cached_input_tokens = serializers.IntegerField(help_text="The part of input_tokens served from the cache.")
    output_tokens = serializers.IntegerField(help_text="All generated tokens, reasoning and audio included.")
    cache_write_tokens = serializers.IntegerField(
        help_text="The part of input_tokens written to the prompt cache with the short (about 5 min) lifetime.")
    cache_write_long_tokens = serializers.IntegerField(
        help_text="The part of input_tokens written to the prompt cache with the long (about 1 h) lifetime.")
    audio_input_tokens = serializers.IntegerField(help_text="The uncached audio part of input_tokens.")
    audio_output_tokens = serializers.IntegerField(help_text="The audio part of output_tokens.")
    reasoning_tokens = serializers.IntegerField(
        help_text="The reasoning part of output_tokens: reported, priced as output.")
    amount = MoneyField(allow_null=True, help_text="Every priced token class at the unit prices in force; null where "
                                                   "some of the usage has no price. Usage a customer served from a "
                                                   "cluster it rents is counted, not priced (the rental covers it).")


class UsageApi(APIView):
    scopes = ("customer",)
    pagination_class = NextPagination

    @extend_schema(operation_id="usage_list", parameters=[UsageQuerySerializer],
                   responses={200: page_of(UsageRowSerializer), 404: problem(404)},
                   description="Usage from the hourly rollups over `[start, end)`, one row per customer and group; "
                               "`amount` is rated at the unit prices in force, before contract-level discounts.")
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        customer_id = params.get("customer_id")
        bound = customer_scope_of(request)
        if bound is not None:
            if customer_id not in (None, bound):
                raise NotFound("No such customer.")
            customer_id = bound
        rows = selectors.usage_report(customer_id=customer_id, start=params["start"], end=params["end"],
                                      group_by=params["group_by"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response([
            {k: (v.isoformat() if hasattr(v, "isoformat") else money(v) if k == "amount" else v)
             for k, v in row.items()}
            for row in page
        ])


# --- price books ------------------------------------------------------------------


class UnitPriceSerializer(serializers.Serializer):
    model_tier = serializers.SlugField(max_length=32)
    service_tier = ServiceTierField()
    token_class = serializers.ChoiceField(choices=TokenClass.values)
    unit_price = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=Decimal(0),
                                          help_text="USD per 1,000,000 tokens, at most 6 decimals.")

    def validate_model_tier(self, value):
        if not ModelTierChange.objects.filter(tier=value).exists():
            raise serializers.ValidationError(f"No model is in tier '{value}'.")
        return value

    def to_representation(self, instance):
        return {"model_tier": instance.model_tier, "service_tier": instance.service_tier,
                "token_class": instance.token_class, "unit_price": unit_price_text(instance.unit_price)}


def unique_keys(items: list[dict]) -> list[dict]:
    seen = set()
    for item in items:
        key = (item["model_tier"], item["service_tier"], item["token_class"])
        if key in seen:
            raise serializers.ValidationError(f"{'/'.join(key)} is priced twice.")
        seen.add(key)
    return items


class PriceBookSerializer(serializers.ModelSerializer):
    """A published version, as listed and as answered to a POST."""

    status = serializers.ChoiceField(choices=PriceBook.Status.choices, read_only=True)
    prices = UnitPriceSerializer(many=True, read_only=True)
    superseded_by = serializers.SerializerMethodField(
        help_text="The published correction of this version (it prices from the same instant instead), or null.")

    class Meta:
        model = PriceBook
        fields = ["id", "effective_from", "currency", "note", "status", "published_at", "published_by", "revision",
                  "corrects", "superseded_by", "prices"]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_superseded_by(self, book: PriceBook) -> int | None:
        return book.superseded_by_id  # annotated by selectors.published_price_books


class PriceBookCreateSerializer(serializers.Serializer):
    """A new version, or (`corrects`) a correction of a published one."""

    effective_from = InstantField(
        required=False, validators=[on_the_hour],
        help_text="On the hour. Required for a new version; for a correction, omitted or the corrected version's.")
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False,
                                      help_text="USD if omitted; for a correction, the corrected version's.")
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    corrects = serializers.PrimaryKeyRelatedField(
        queryset=PriceBook.objects.all(), required=False, allow_null=True, default=None,
        help_text="Id of the published version to correct: its newest revision (409 otherwise). The correction "
                  "supersedes it from its effective_from, with the next revision; it stays published, unchanged.")
    prices = UnitPriceSerializer(many=True)

    def validate_prices(self, value):
        if not value:
            raise serializers.ValidationError("A price book holds at least one price.")
        return unique_keys(value)

    def validate(self, attrs):
        corrected = attrs["corrects"]
        if corrected is None and "effective_from" not in attrs:
            raise serializers.ValidationError({"effective_from": ["Required unless `corrects` names a version."]})
        if corrected is not None:
            attrs.setdefault("effective_from", corrected.effective_from)
            attrs.setdefault("currency", corrected.currency)
        attrs.setdefault("currency", "USD")
        return attrs


class PriceBookListApi(APIView):
    scopes = ("admin",)
    pagination_class = NextPagination

    @extend_schema(responses={200: PriceBookSerializer(many=True)},
                   description="Every published version, newest instant and revision first; a superseded one "
                               "names its correction in `superseded_by`.")
    def get(self, request):
        books = selectors.published_price_books()
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(books, request, view=self)
        return paginator.get_paginated_response(PriceBookSerializer(page, many=True).data)

    @extend_schema(request=PriceBookCreateSerializer, responses={201: PriceBookSerializer, 409: problem(409)},
                   description="A posted price book is published at once and immutable. With `corrects` it is a "
                               "correction of that version (409 if that one is a draft or already corrected).")
    def post(self, request):
        data = PriceBookCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = dict(data.validated_data)
        corrected = params.pop("corrects")
        book = price_book_create(**params, corrects=corrected.pk if corrected else None, actor=actor_of(request),
                                 as_of=utc_now())
        return Response(PriceBookSerializer(selectors.published_price_books().get(pk=book.pk)).data,
                        status=status.HTTP_201_CREATED)


# --- contracts, credits, upcoming invoice --------------------------------------------


class VolumeBandSerializer(serializers.Serializer):
    up_to = serializers.IntegerField(min_value=1, allow_null=True, help_text="Tokens; null for the open-ended band.")
    unit_price = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=Decimal(0))


class VolumeTierSerializer(UnitPriceSerializer):
    unit_price = None
    bands = VolumeBandSerializer(many=True)

    def validate_bands(self, bands):
        bounds = [b["up_to"] for b in bands]
        if not bands or bounds[-1] is not None or None in bounds[:-1]:
            raise serializers.ValidationError("Bands end with exactly one open-ended band (up_to null).")
        if bounds[:-1] != sorted(set(bounds[:-1])):
            raise serializers.ValidationError("Band bounds must increase.")
        return bands


class ContractSerializer(serializers.Serializer):
    effective_from = InstantField(validators=[on_the_hour])
    effective_to = InstantField(required=False, allow_null=True, default=None, validators=[on_the_hour])
    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2, min_value=Decimal(0),
                                                max_value=Decimal(100), default=Decimal(0))
    monthly_minimum = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal(0),
                                               required=False, allow_null=True, default=None)
    unit_price_overrides = UnitPriceSerializer(many=True, required=False, default=list)
    volume_tiers = VolumeTierSerializer(many=True, required=False, default=list)

    def validate_unit_price_overrides(self, value):
        return unique_keys(value)

    def validate_volume_tiers(self, value):
        return unique_keys(value)

    def validate(self, attrs):
        if attrs["effective_to"] is not None and attrs["effective_to"] <= attrs["effective_from"]:
            raise serializers.ValidationError({"effective_to": ["Must be after effective_from."]})
        return attrs

    def to_representation(self, contract: Contract):
        tiers: dict[tuple, dict] = {}
        for band in contract.volume_bands.all():
            entry = tiers.setdefault(band.key, {"model_tier": band.model_tier, "service_tier": band.service_tier,
                                                "token_class": band.token_class, "bands": []})
            entry["bands"].append({"up_to": band.tokens_up_to, "unit_price": unit_price_text(band.unit_price)})
        return {
            "customer_id": contract.customer.customer_id,
            "effective_from": contract.effective_from.isoformat(),
            "effective_to": contract.effective_to.isoformat() if contract.effective_to else None,
            "discount_percent": money(contract.discount_percent),
            "monthly_minimum": money(contract.monthly_minimum),
            "unit_price_overrides": UnitPriceSerializer(contract.unit_price_overrides.all(), many=True).data,
            "volume_tiers": list(tiers.values()),
        }


class ContractApi(APIView):
    scopes = ("admin",)

    @extend_schema(responses={200: ContractSerializer})
    def get(self, request, customer_id):
        customer = customer_visible(request, customer_id)
        contract = selectors.contract_for_period(customer_id=customer.customer_id, start=utc_now(), end=utc_now())
        contract = contract or customer.contracts.order_by("-effective_from").first()
        if contract is None:
            raise NotFound("This customer has no contract.")
        return Response(ContractSerializer(contract).data)

    @extend_schema(request=ContractSerializer, responses={200: ContractSerializer, 409: problem(409)},
                   description="Starts a new contract version at effective_from; an open-ended earlier version is "
                               "closed there. Overlapping any other version answers 409.")
    def put(self, request, customer_id):
        customer = customer_visible(request, customer_id)
        data = ContractSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        contract = contract_put(customer_id=customer.customer_id, **data.validated_data, actor=actor_of(request))
        return Response(ContractSerializer(contract).data)


class CreditEntrySerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    reason = serializers.CharField(max_length=200)

    class Meta:
        model = CreditEntry
        fields = ["id", "amount", "reason", "created_at", "created_by"]
        read_only_fields = ["id", "created_at", "created_by"]


class CreditListApi(APIView):
    scopes = ("customer",)
    pagination_class = NextPagination

    @extend_schema(responses={200: page_of(CreditEntrySerializer, balance=MoneyField())})
    def get(self, request, customer_id):
        customer = customer_visible(request, customer_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(customer.credit_entries.all(), request, view=self)
        response = paginator.get_paginated_response(CreditEntrySerializer(page, many=True).data)
        response.data["balance"] = money(selectors.credit_balance(customer_id=customer.customer_id))
        return response

    @extend_schema(request=CreditEntrySerializer, responses={201: CreditEntrySerializer})
    def post(self, request, customer_id):
        if customer_scope_of(request) is not None:
            self.permission_denied(request, "Only an admin key grants credit.")
        customer = customer_visible(request, customer_id)
        data = CreditEntrySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        entry = credit_grant(customer_id=customer.customer_id, **data.validated_data, actor=actor_of(request),
                             as_of=utc_now())
        return Response(CreditEntrySerializer(entry).data, status=status.HTTP_201_CREATED)


def invoice_line_json(line, *, period: str) -> dict:
    """One line of an invoice or of a rating (an InvoiceLine row or a rating Line): what
    InvoiceLineSerializer describes."""
    return {"kind": line.kind, "description": line.description, "model": line.model or None,
            "service_tier": line.service_tier or None, "token_class": line.token_class or None,
            "tokens": line.tokens or None, "unit_price": unit_price_text(line.unit_price),
            "amount": money(line.amount), "period": period or None,
            "usage_start": line.usage_start.isoformat() if line.usage_start else None,
            "usage_end": line.usage_end.isoformat() if line.usage_end else None}


class InvoiceLineSerializer(serializers.Serializer):
    """A line of an invoice or of the upcoming invoice."""

    kind = serializers.ChoiceField(choices=InvoiceLine.Kind.values)
    description = serializers.CharField()
    model = serializers.CharField(allow_null=True)
    service_tier = serializers.CharField(allow_null=True)
    token_class = serializers.ChoiceField(choices=TokenClass.values, allow_null=True)
    tokens = serializers.IntegerField(allow_null=True)
    unit_price = UnitPriceField(allow_null=True, help_text="USD per 1,000,000 tokens; on capacity lines, USD per "
                                                           "unit-hour (or accelerator-hour).")
    amount = MoneyField()
    period = PeriodField(allow_null=True, help_text="YYYY-MM of the usage, on late usage lines.")
    usage_start = serializers.DateTimeField(allow_null=True, help_text="Usage lines: [usage_start, usage_end); "
                                                                       "capacity lines: the hours of the term billed.")
    usage_end = serializers.DateTimeField(allow_null=True)


def rated_invoice_json(rated: RatedInvoice) -> dict:
    return {
        "lines": [invoice_line_json(line, period=line.period) for line in rated.lines],
        "subtotal": money(rated.subtotal),
        "credits_applied": money(rated.credits_applied),
        "total": money(rated.total),
    }


class UpcomingInvoiceSerializer(serializers.Serializer):
    """What this period's invoice would be right now."""

    customer_id = serializers.CharField()
    currency = serializers.CharField()
    period = PeriodField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    lines = InvoiceLineSerializer(many=True)
    subtotal = MoneyField()
    credits_applied = MoneyField()
    total = MoneyField()


class UpcomingInvoiceApi(APIView):
    scopes = ("customer",)

    @extend_schema(responses={200: UpcomingInvoiceSerializer},
                   description="What this period's invoice would be right now, like Stripe's upcoming invoice.")
    def get(self, request, customer_id):
        customer = customer_visible(request, customer_id)
        start, end, rated = selectors.upcoming_invoice(customer_id=customer.customer_id, as_of=utc_now())
        return Response({"customer_id": customer.customer_id, "currency": customer.currency,
                         "period": f"{start:%Y-%m}", "period_start": start.isoformat(),
                         "period_end": end.isoformat(), **rated_invoice_json(rated)})
