"""GET /customers/{id}/balance (a gateway's hot path), GET|PUT /customers/{id}/budget and
GET /budgets/nearest-limit (the finance dashboard's panel)."""

from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import actor_of, customer_visible
from billing.models import Budget
from billing.rating.money import money_text as money
from billing.selectors import month_bounds
from billing.selectors.budgets import budgets_nearest_limit, budgets_without_spend
from billing.services.spend import BalanceView, balance_read, budget_json, budget_put, spends_refresh
from config.api import customer_scope_of
from config.openapi import MoneyField, page_of
from metering.services import utc_now


class BalanceSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    period = serializers.CharField(help_text="YYYY-MM: the current billing period.")
    spend = MoneyField(help_text="Usage at the prices in force with the contract's unit prices, graduated bands "
                                 "and discount, plus the period's capacity lines: the invoice's subtotal before the "
                                 "monthly minimum and credits. Late usage of earlier periods is not in it.")
    credit_remaining = MoneyField(help_text="Prepaid credit balance minus spend, never below zero.")
    budget = MoneyField(allow_null=True, help_text="The monthly limit; null without a budget.")
    budget_remaining = MoneyField(allow_null=True, help_text="Limit minus spend, never below zero.")
    allowed = serializers.BooleanField(help_text="False once spend reaches a hard budget's limit.")
    as_of = serializers.DateTimeField(help_text="Every event produced to the usage topic before this instant is "
                                                "counted.")
    lag_ms = serializers.IntegerField(help_text="Milliseconds from as_of to now: how far the ledger trails.")
    unpriced = serializers.BooleanField(help_text="Some usage has no price yet and is not in spend.")


class BalanceApi(APIView):
    scopes = ("ingest", "customer")
    throttle_scope = "balance"

    @extend_schema(responses={200: BalanceSerializer},
                   description="Answered from the live spend the ledger consumer keeps current, not by rating the "
                               "month. A customer key reads only its own (another customer's is a 404).")
    def get(self, request, customer_id):
        bound = customer_scope_of(request)
        balance = None if bound is not None and bound != customer_id else \
            balance_read(customer_id=customer_id, as_of=utc_now())
        if balance is None:
            raise NotFound("No such customer.")
        return Response(balance_json(balance))


def balance_json(balance: BalanceView) -> dict:
    """What BalanceSerializer describes (the hot path answers the same)."""
    return {"customer_id": balance.customer_id, "period": balance.period, "spend": money(balance.spend),
            "credit_remaining": money(balance.credit_remaining), "budget": money(balance.budget),
            "budget_remaining": money(balance.budget_remaining), "allowed": balance.allowed,
            "as_of": balance.as_of.isoformat(), "lag_ms": balance.lag_ms, "unpriced": balance.unpriced}


class BudgetSerializer(serializers.Serializer):
    monthly_limit = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    thresholds = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=1000), max_length=20,
                                       default=list, help_text="Percentages of the limit, ascending, e.g. [50, 80, 100]; "
                                                               "each is announced once a period "
                                                               "(budget.threshold_crossed).")
    hard = serializers.BooleanField(default=False, help_text="Answer allowed: false from 100% on.")

    def validate_thresholds(self, value):
        if value != sorted(set(value)):
            raise serializers.ValidationError("Thresholds must be distinct and ascending.")
        return value


class BudgetApi(APIView):
    scopes = ("customer",)

    @extend_schema(responses={200: BudgetSerializer})
    def get(self, request, customer_id):
        customer = customer_visible(request, customer_id)
        budget = Budget.objects.filter(customer=customer).first()
        if budget is None:
            raise NotFound("This customer has no budget.")
        return Response(budget_json(budget))

    @extend_schema(request=BudgetSerializer, responses={200: BudgetSerializer},
                   description="Sets or replaces the budget (an admin key, or a customer key for its own). "
                               "Thresholds spend already stands past are announced at once.")
    def put(self, request, customer_id):
        customer = customer_visible(request, customer_id)
        data = BudgetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        budget = budget_put(customer_id=customer.customer_id, **data.validated_data, actor=actor_of(request),
                            as_of=utc_now())
        return Response(budget_json(budget))


class NearestLimitQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)


class BudgetStandingSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    name = serializers.CharField()
    period = serializers.CharField(help_text="YYYY-MM: the current billing period.")
    spend = MoneyField()
    monthly_limit = MoneyField()
    percent_of_limit = MoneyField(help_text="Spend as a percentage of the limit, to 2 places.")
    hard = serializers.BooleanField()
    allowed = serializers.BooleanField(help_text="False once spend reaches a hard budget's limit.")


class BudgetsNearestLimitApi(APIView):
    scopes = ("admin",)

    @extend_schema(parameters=[NearestLimitQuerySerializer], responses={200: page_of(BudgetStandingSerializer)},
                   description="The customers whose spend this period is the largest share of their budget, largest "
                               "first (one page). Spend not computed yet is computed first, as a balance read does.")
    def get(self, request):
        query = NearestLimitQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        now = utc_now()
        period = month_bounds(now)[0].date()
        spends_refresh(customer_ids=budgets_without_spend(period=period), as_of=now)
        standings = budgets_nearest_limit(period=period, limit=query.validated_data["limit"])
        return Response({"next": None, "results": [{
            "customer_id": s.customer_id, "name": s.name, "period": f"{s.period:%Y-%m}", "spend": money(s.spend),
            "monthly_limit": money(s.monthly_limit), "percent_of_limit": money(s.percent_of_limit), "hard": s.hard,
            "allowed": s.allowed,
        } for s in standings]})
