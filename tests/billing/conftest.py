"""Billing fixtures: list prices published, rollups written straight into the projection."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.services.price_books import price_book_create
from infra_inventory.models import Cluster, Datacenter, HardwareSku
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


@pytest.fixture
def fleet(catalog):
    """Clusters for capacity: iad-h100-a (8 accelerators), iad-h100-b (16), and `retired`,
    out of service from 2026-10-20."""
    sku = HardwareSku.objects.create(name="h100-sxm", vendor="NVIDIA", accelerator="H100", unit_cost=Decimal("30000"),
                                     amortization_months=48, board_watts=700)
    dc = Datacenter.objects.create(name="iad-1", region="us-east", pue=Decimal("1.20"))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "iad-h100-a": Cluster.objects.create(name="iad-h100-a", datacenter=dc, sku=sku, accelerator_count=8,
                                             in_service_from=since),
        "iad-h100-b": Cluster.objects.create(name="iad-h100-b", datacenter=dc, sku=sku, accelerator_count=16,
                                             in_service_from=since),
        "retired": Cluster.objects.create(name="retired", datacenter=dc, sku=sku, accelerator_count=4,
                                          in_service_from=since, in_service_to=datetime(2026, 10, 20, tzinfo=UTC)),
    }
