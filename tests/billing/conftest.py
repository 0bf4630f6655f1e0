"""Billing fixtures: list prices published, rollups written straight into the projection."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.services.price_books import price_book_create
from metering.models import HourlyRollup
from scripts.demo_pricing import price_list


def rollup(customer_id: str, model: str, hour: datetime, *, input_tokens: int, cached: int = 0, output: int = 0,
           service_tier: str = "standard", events: int = 1) -> None:
    """Usage as the consumer would have rolled it up (the ledger itself is not needed to bill)."""
    HourlyRollup.objects.create(customer_id=customer_id, model=model, service_tier=service_tier, region="",
                                cluster="", hour=hour, events=events, input_tokens=input_tokens,
                                cached_input_tokens=cached, output_tokens=output)


@pytest.fixture
def list_prices(catalog):
    """The demo list prices (issue #3), in force since 2026-01-01."""
    return price_book_create(effective_from=datetime(2026, 1, 1, tzinfo=UTC), currency="USD", prices=price_list(),
                             actor="test", as_of=datetime(2026, 1, 1, tzinfo=UTC))


def usd(text: str) -> Decimal:
    return Decimal(text)
