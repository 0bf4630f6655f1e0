"""Live spend and balances (DESIGN.md §7): what a period has cost so far, what is left of
prepaid credit and of the budget, which alert thresholds are reached. Pure."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.rating.engine import invoice_rate
from billing.rating.types import CapacityTerm, ContractTerms, PriceMissing, PriceSchedule, Quantity

ZERO = Decimal(0)


@dataclass(frozen=True)
class Spent:
    """A period's spend, and whether some of its usage had no price (and is not in it)."""

    amount: Decimal
    unpriced: bool = False


@dataclass(frozen=True)
class BudgetTerms:
    monthly_limit: Decimal
    thresholds: tuple[int, ...] = ()
    hard: bool = False


@dataclass(frozen=True)
class Balance:
    spend: Decimal
    credit_remaining: Decimal
    budget: Decimal | None
    budget_remaining: Decimal | None
    allowed: bool


def _priced(q: Quantity, *, schedule: PriceSchedule, terms: ContractTerms) -> bool:
    """Whether the engine can price this quantity (the same choice of price it makes)."""
    try:
        key = (schedule.tier_at(q.model, q.hour), q.service_tier, q.token_class)
        if key in terms.volume_tiers or key in terms.unit_price_overrides:
            return True
        schedule.price_at(key, q.hour)
    except PriceMissing:
        return False
    return True


def period_spend(*, usage: Iterable[Quantity], schedule: PriceSchedule, terms: ContractTerms,
                 capacity: Iterable[CapacityTerm], period: tuple[datetime, datetime]) -> Spent:
    """The lines an invoice of the period would have for its own usage (graduated bands
    and contract prices included), its capacity lines and its discount, summed: the
    invoice's subtotal before the monthly minimum and prepaid credits. Usage without a
    price is left out and reported, so one unpriced model never hides the rest."""
    usage = list(usage)
    priced = [q for q in usage if _priced(q, schedule=schedule, terms=terms)]
    rated = invoice_rate(usage=priced, schedule=schedule, terms=terms, capacity=capacity, period=period)
    spent = sum((line.amount for line in rated.lines if line.kind in ("usage", "capacity", "discount")), ZERO)
    return Spent(spent, unpriced=len(priced) != len(usage))


def balance_of(*, spend: Decimal, credit_balance: Decimal, budget: BudgetTerms | None) -> Balance:
    """Credit and budget left (never below zero); a hard budget refuses from 100% on."""
    credit_remaining = max(credit_balance - spend, ZERO)
    if budget is None:
        return Balance(spend, credit_remaining, None, None, True)
    return Balance(spend, credit_remaining, budget.monthly_limit, max(budget.monthly_limit - spend, ZERO),
                   not (budget.hard and spend >= budget.monthly_limit))


def thresholds_reached(*, spend: Decimal, budget: BudgetTerms | None) -> tuple[int, ...]:
    """The thresholds (percentages of the limit) that `spend` has reached."""
    if budget is None:
        return ()
    return tuple(t for t in budget.thresholds if spend * 100 >= budget.monthly_limit * t)


def credit_exhausted(*, spend: Decimal, credit_balance: Decimal) -> bool:
    """Prepaid credit there was, and the period's spend has used all of it."""
    return credit_balance > 0 and spend >= credit_balance
