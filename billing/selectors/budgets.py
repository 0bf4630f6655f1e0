"""Budgets against the live spend of a period (DESIGN.md §7), for the admin's lists and the
finance dashboard. A period without a spend row (not computed yet, or forgotten after a
repricing) reads as None, never as zero."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, OuterRef, QuerySet, Subquery

from billing.models import Budget, Spend
from billing.rating import balance_of
from billing.selectors.spend import budget_terms


def spend_of_period(*, period: date, customer: str) -> Subquery:
    """The spend of `period` of the customer the outer query's `customer` field names."""
    return Subquery(Spend.objects.filter(customer=OuterRef(customer), period=period).values("spend")[:1])


def customers_with_spend(customers: QuerySet, *, period: date) -> QuerySet:
    """Customers with `period_spend` and `budget_limit` (None: no budget) annotated."""
    return customers.annotate(period_spend=spend_of_period(period=period, customer="pk"),
                              budget_limit=F("budget__monthly_limit"))


def budgets_with_spend(budgets: QuerySet, *, period: date) -> QuerySet:
    """Budgets with `period_spend` and `percent_of_limit` (unrounded) annotated."""
    return budgets.annotate(period_spend=spend_of_period(period=period, customer="customer")).annotate(
        percent_of_limit=ExpressionWrapper(F("period_spend") * 100 / F("monthly_limit"), output_field=DecimalField()))


@dataclass(frozen=True)
class BudgetStanding:
    """A customer's spend of a period against its budget."""

    customer_id: str
    name: str
    period: date
    spend: Decimal
    monthly_limit: Decimal
    percent_of_limit: Decimal  # unrounded
    hard: bool
    allowed: bool


def budgets_nearest_limit(*, period: date, limit: int = 10) -> list[BudgetStanding]:
    """The `limit` budgets whose spend of `period` is the largest share of their limit,
    largest first; budgets without a spend row for it are left out."""
    rows = (budgets_with_spend(Budget.objects.select_related("customer"), period=period)
            .filter(period_spend__isnull=False).order_by("-percent_of_limit", "customer__customer_id")[:limit])
    return [BudgetStanding(
        customer_id=row.customer.customer_id, name=row.customer.name, period=period, spend=row.period_spend,
        monthly_limit=row.monthly_limit, percent_of_limit=row.percent_of_limit, hard=row.hard,
        # credit never decides `allowed`: only a hard budget does
        allowed=balance_of(spend=row.period_spend, credit_balance=Decimal(0), budget=budget_terms(row)).allowed,
    ) for row in rows]


def budgets_without_spend(*, period: date) -> list[str]:
    """The customers with a budget and no spend row for `period`."""
    return list(Budget.objects.exclude(customer__spends__period=period)
                .values_list("customer__customer_id", flat=True))
