"""Spend-control fixtures of the gateway client tests: a customer with a hard budget and
spend through the real ledger, the live API and an ingest key, and a count of the
balance requests a BalanceCache sends."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from billing.selectors import month_bounds
from billing.services.spend import budget_put, spends_refresh
from gateway_client import BalanceCache
from gateway_client.balance import BalanceReader
from metering.services import api_key_create, utc_now
from tests.billing.conftest import list_prices  # noqa: F401 (fixture)
from tests.spend.conftest import usage


class Counting:
    """The cache's reader, passed through, with each customer asked for kept."""

    def __init__(self, reader: BalanceReader):
        self.reader, self.asked = reader, []
        self.lock = threading.Lock()

    def get(self, customer_id: str):
        with self.lock:
            self.asked.append(customer_id)
        return self.reader.get(customer_id)


def counted(cache: BalanceCache) -> Counting:
    cache.reader = Counting(cache.reader)
    return cache.reader


def served(customer_id: str = "acme", *, input_tokens: int = 1_000_000, output_tokens: int = 100_000) -> dict:
    """frontier standard at list prices: 1M input × 2.50 + 100k output × 15.00 per million = 4.00"""
    now = utc_now()
    when = max(now - timedelta(minutes=3), month_bounds(now)[0])  # in the current period
    return {"customer_id": customer_id, "model": "gpt-5.4", "timestamp": when.isoformat(),
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cached_input_tokens": 0,
            "region": ..., "cluster": ..., "metadata": ...}


def spend(*events: dict, customer_id: str = "acme") -> None:
    """Append through the ledger, then refresh the live spend as the consumer's batch does."""
    usage(*events, arrived_at=utc_now())
    spends_refresh(customer_ids=[customer_id], as_of=utc_now())


@pytest.fixture
def budgeted(list_prices):  # noqa: F811 (the fixture imported above)
    """acme: a hard budget of 10.00 and 4.00 spent this period."""
    budget_put(customer_id="acme", monthly_limit=Decimal("10.00"), thresholds=[50, 100], hard=True, actor="test",
               as_of=utc_now())
    spend(served())


@pytest.fixture
def api(live_server) -> str:
    return f"{live_server.url}/api/v1"


@pytest.fixture
def ingest(transactional_db) -> str:
    return api_key_create(scope="ingest", name="gateway-balance")[1]
