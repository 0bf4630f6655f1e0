"""Reads for spend control: a period's spend from the usage segments (what the consumer
refreshes), and the one-query read a balance is answered from."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Max, Sum

from billing.models import CreditEntry
from billing.rating import BudgetTerms, ContractTerms, Spent, period_spend
from billing.selectors import (
    capacity_terms, price_schedule, quantities_from_rows, rentals_overlapping, segment_boundaries,
    terms_for_customers,
)
from metering import selectors as metering_selectors


def period_spends(*, customer_ids: list[str], start: datetime, end: datetime) -> dict[str, Spent]:
    """What each customer has spent in [start, end) so far (billing.rating.spend), rated
    from its usage segments rather than its hourly rollups: segments never cross a price,
    tier or rental boundary, so summed into the rating's stretches they give the very
    quantities an invoice of the period rates. Usage a rental covers is left out, as rating does."""
    schedule = price_schedule()
    wanted = set(customer_ids)
    rentals = defaultdict(list)
    for rental in rentals_overlapping(start=start, end=end):
        if rental.customer_id in wanted:
            rentals[(rental.customer_id, rental.cluster)].append(rental)
    billable = [
        (customer_id, model, service_tier, starts_at, *tokens)
        for customer_id, model, service_tier, cluster, starts_at, *tokens
        in metering_selectors.usage_segment_rows(customer_ids=customer_ids, start=start, end=end)
        if not any(r.covers(starts_at) for r in rentals.get((customer_id, cluster), ()))
    ]
    own = quantities_from_rows(billable, boundaries=segment_boundaries(schedule, start, end), end=end)
    terms = terms_for_customers(customer_ids=customer_ids, start=start, end=end)
    capacity = capacity_terms(customer_ids=customer_ids, start=start, end=end)
    return {customer_id: period_spend(usage=own.get(customer_id, []), schedule=schedule,
                                      terms=terms.get(customer_id, ContractTerms()),
                                      capacity=capacity.get(customer_id, ()), period=(start, end))
            for customer_id in customer_ids}


def credit_states(*, customer_ids: list[str]) -> dict[str, tuple[Decimal, int]]:
    """(credit balance, id of the newest entry) per customer with credit entries."""
    rows = (CreditEntry.objects.filter(customer__customer_id__in=customer_ids).values("customer__customer_id")
            .annotate(balance=Sum("amount"), last=Max("id")))
    return {row["customer__customer_id"]: (row["balance"], row["last"]) for row in rows}


def budget_terms(row) -> BudgetTerms | None:
    """A Budget (or None) as the rating core takes it."""
    return None if row is None else BudgetTerms(row.monthly_limit, tuple(row.thresholds), row.hard)


@dataclass(frozen=True)
class BalanceState:
    """Everything a balance is answered from, read in one query."""

    customer_pk: int
    customer_id: str
    spend: Decimal | None  # None: no live spend for the period yet
    credit_balance: Decimal
    unpriced: bool
    computed_at: datetime | None
    budget: BudgetTerms | None
    ledger_as_of: datetime | None


_STATE_COLUMNS = """c.id, c.customer_id, s.spend, s.credit_balance, s.unpriced, s.computed_at,
       b.monthly_limit, b.thresholds, b.hard,
       (SELECT min(w.caught_up_at) FROM metering_consumer_watermark w WHERE w.topic = %(topic)s)"""
_STATE_JOINS = """LEFT JOIN billing_spend s ON s.customer_id = c.id AND s.period = %(period)s
LEFT JOIN billing_budget b ON b.customer_id = c.id"""
BALANCE_SQL = f"""
SELECT {_STATE_COLUMNS}
FROM metering_customer c
{_STATE_JOINS}
WHERE c.customer_id = %(customer)s
"""
# The same, with the API key that asks (hashed), in one round trip (billing/balance_hot_path.py).
KEYED_BALANCE_SQL = f"""
SELECT k.scope, kc.customer_id, {_STATE_COLUMNS}
FROM metering_apikey k
LEFT JOIN metering_customer kc ON kc.id = k.customer_id
JOIN metering_customer c ON c.customer_id = %(customer)s
{_STATE_JOINS}
WHERE k.key_hash = %(key_hash)s AND k.revoked_at IS NULL
"""


def _state(row) -> BalanceState:
    pk, customer, spend, credit, unpriced, computed_at, limit, thresholds, hard, as_of = row
    budget = None if limit is None else BudgetTerms(limit, tuple(thresholds), hard)
    return BalanceState(pk, customer, spend, credit or Decimal(0), bool(unpriced), computed_at, budget, as_of)


def balance_state(*, customer_id: str, period: datetime, topic: str) -> BalanceState | None:
    """The customer's live spend of `period`, its budget and the ledger's watermark; None
    for an unknown customer."""
    with connection.cursor() as cursor:
        cursor.execute(BALANCE_SQL, {"customer": customer_id, "period": period.date(), "topic": topic})
        row = cursor.fetchone()
    return None if row is None else _state(row)


def keyed_balance_state(*, key_hash: str, customer_id: str, period: datetime, topic: str
                        ) -> tuple[str, str | None, BalanceState] | None:
    """(the key's scope, the customer it is bound to, the balance state) for a live key and
    a known customer, else None."""
    with connection.cursor() as cursor:
        cursor.execute(KEYED_BALANCE_SQL, {"key_hash": key_hash, "customer": customer_id, "period": period.date(),
                                           "topic": topic})
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1], _state(row[2:]))
