"""A property over random traffic: for any usage, written in several batches around a
price change published mid-way, a contract and a rental, each customer's live spend
equals a full rating of the period, and the usage segments agree with the ledger."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.services.capacity import rental_create
from billing.services.contracts import contract_put
from billing.services.price_books import price_book_create
from billing.services.spend import balance_read, spends_refresh
from metering.models import Customer
from metering.projections import segment_differences
from scripts.demo_pricing import price_list
from tests.spend.conftest import preview_spend, usage

MODELS = ("gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano")
CLUSTERS = ("", "iad-h100-a", "iad-h100-b")
_examples = itertools.count()

served = st.tuples(
    st.integers(0, 1), st.sampled_from(MODELS), st.sampled_from(("standard", "batch", "priority")),
    st.sampled_from(CLUSTERS), st.integers(0, 27 * 24 - 1).map(lambda k: k * 157 % (27 * 24)),  # spread over the month
    st.integers(0, 59),
    st.integers(0, 50).map(lambda k: k * 100_003), st.integers(0, 100), st.integers(0, 20).map(lambda k: k * 50_001),
)  # token counts in the hundreds of thousands: amounts of dollars, so a wrong price shows


def _body(n: int, customers: list[str], month: datetime, item) -> dict:
    who, model, tier, cluster, hour, minute, input_tokens, cached_pct, output_tokens = item
    at = month + timedelta(hours=hour, minutes=minute)
    return {"event_id": f"e{n}", "customer_id": customers[who], "model": model, "service_tier": tier,
            "cluster": cluster or ..., "timestamp": at.isoformat(), "input_tokens": input_tokens,
            "cached_input_tokens": input_tokens * cached_pct // 100, "output_tokens": output_tokens}


@pytest.mark.django_db
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traffic=st.lists(served, min_size=4, max_size=60), split_pct=st.integers(0, 100),
       change_hour=st.integers(1, 27 * 24 - 1), discount=st.sampled_from(("0", "7.5", "12.25")),
       rental=st.one_of(st.none(), st.tuples(st.integers(0, 20 * 24), st.integers(1, 400))))
def test_live_spend_equals_a_full_rating(list_prices, fleet, traffic, split_pct, change_hour, discount, rental):
    n = next(_examples)
    month = datetime(2026 + n // 12, n % 12 + 1, 1, tzinfo=UTC)  # a month and customers of its own
    as_of = month + timedelta(days=27, hours=23)
    customers = [f"p{n}-a", f"p{n}-b"]
    for customer_id in customers:
        Customer.objects.create(customer_id=customer_id, name=customer_id)
    contract_put(customer_id=customers[0], effective_from=month, effective_to=None,
                 discount_percent=Decimal(discount), monthly_minimum=None, unit_price_overrides=[], actor="t",
                 volume_tiers=[{"model_tier": "frontier", "service_tier": "standard", "token_class": "input",
                                "bands": [{"up_to": 3_000_000, "unit_price": Decimal("2.50")},
                                          {"up_to": None, "unit_price": Decimal("1.25")}]}])
    bodies = [_body(i, customers, month, item) for i, item in enumerate(traffic)]
    split = len(bodies) * split_pct // 100
    factor = Decimal("1.5") if n % 2 else Decimal("2.5")  # unlike the book in force since the month before
    usage(*bodies[:split], arrived_at=as_of) if bodies[:split] else None
    spends_refresh(customer_ids=customers, as_of=as_of)
    price_book_create(effective_from=month + timedelta(hours=change_hour, minutes=30), currency="USD", actor="t",
                      as_of=as_of, prices=[dict(p, unit_price=p["unit_price"] * factor) for p in price_list()])
    if rental is not None:
        start = month + timedelta(hours=rental[0])
        rental_create(customer_id=customers[1], cluster="iad-h100-a", accelerator_hour_price=Decimal("0.75"),
                      starts_at=start, ends_at=start + timedelta(hours=rental[1]), actor="t", as_of=as_of)
    usage(*bodies[split:], arrived_at=as_of) if bodies[split:] else None
    spends_refresh(customer_ids=customers, as_of=as_of)

    for customer_id in customers:
        assert balance_read(customer_id=customer_id, as_of=as_of).spend == preview_spend(customer_id, as_of)
    assert segment_differences(start=month, end=month + timedelta(days=31)) == []
