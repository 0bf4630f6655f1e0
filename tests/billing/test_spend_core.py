"""The pure rules of spend control (billing/rating/spend.py)."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing.rating import BudgetTerms, balance_of, credit_exhausted, thresholds_reached

money = st.decimals(min_value=0, max_value=100_000, places=2, allow_nan=False, allow_infinity=False)
D = Decimal


def test_credit_and_budget_left_never_go_below_zero():
    balance = balance_of(spend=D("120.00"), credit_balance=D("50.00"), budget=BudgetTerms(D("100.00"), (50,), True))

    assert (balance.credit_remaining, balance.budget_remaining, balance.allowed) == (0, 0, False)


def test_without_a_budget_everything_is_allowed_and_nothing_is_left_to_say():
    balance = balance_of(spend=D("1000000.00"), credit_balance=D(0), budget=None)

    assert (balance.budget, balance.budget_remaining, balance.allowed) == (None, None, True)


def test_a_hard_budget_refuses_from_exactly_its_limit_a_soft_one_never():
    hard, soft = BudgetTerms(D("10.00"), (), True), BudgetTerms(D("10.00"), (), False)

    assert balance_of(spend=D("9.99"), credit_balance=D(0), budget=hard).allowed
    assert not balance_of(spend=D("10.00"), credit_balance=D(0), budget=hard).allowed
    assert balance_of(spend=D("50.00"), credit_balance=D(0), budget=soft).allowed


def test_thresholds_are_reached_at_their_exact_amount():
    budget = BudgetTerms(D("1000.00"), (50, 80, 100, 120), False)

    assert thresholds_reached(spend=D("499.99"), budget=budget) == ()
    assert thresholds_reached(spend=D("800.00"), budget=budget) == (50, 80)
    assert thresholds_reached(spend=D("1200.00"), budget=budget) == (50, 80, 100, 120)
    assert thresholds_reached(spend=D("5.00"), budget=None) == ()


def test_credit_is_exhausted_only_where_there_was_some():
    assert credit_exhausted(spend=D("10.00"), credit_balance=D("10.00"))
    assert not credit_exhausted(spend=D("9.99"), credit_balance=D("10.00"))
    assert not credit_exhausted(spend=D("5.00"), credit_balance=D(0))


@given(spend=money, credit=money, limit=money.filter(lambda m: m > 0), hard=st.booleans())
def test_what_is_left_and_what_was_spent_add_up(spend, credit, limit, hard):
    balance = balance_of(spend=spend, credit_balance=credit, budget=BudgetTerms(limit, (), hard))

    assert balance.credit_remaining == max(credit - spend, 0)
    assert balance.budget_remaining + min(spend, limit) == limit
    assert balance.allowed == (not hard or spend < limit)
