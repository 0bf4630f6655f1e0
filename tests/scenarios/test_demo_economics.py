"""The demo's month reads like a provider's: its 200,000 requests keep every cluster of the
demo fleet 40–70% busy, frontier earns a healthy margin, nano a thin one, and one cluster
(the CS-3 commissioned at the month's end) serves nothing. Built from the demo's own
traffic, fleet and prices, without the broker (the pipeline has tests of its own)."""

from collections import defaultdict
from datetime import UTC, datetime

import pytest

from billing.services.price_books import price_book_create
from infra_inventory.selectors import unit_economics
from infra_inventory.services import costs_allocate
from metering.models import Customer, HourlyRollup
from metering.services import catalog_model_create
from metering.token_classes import FIELDS as TOKEN_FIELDS
from scripts.demo import CUSTOMERS, MODELS, demo_traffic
from scripts.demo_costs import CLUSTERS, cluster_utilization, fleet_seed
from scripts.demo_pricing import MID_MONTH_CHANGE, price_list

START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
DEMO_EVENTS = 200_000


def rollups_of(traffic, events: int) -> list[HourlyRollup]:
    """What the consumer would roll up from the demo's valid requests (every token field,
    a newer one counting 0 where the request left it out)."""
    sums = defaultdict(lambda: [0] * (1 + len(TOKEN_FIELDS)))
    for customer, event, served_at in traffic.elements(events):
        key = (customer, event["model"], event["service_tier"], event["region"], event.get("cluster", ""),
               served_at.replace(minute=0, second=0, microsecond=0))
        total = sums[key]
        total[0] += 1
        for position, name in enumerate(TOKEN_FIELDS, start=1):
            total[position] += event.get(name, 0)
    return [HourlyRollup(customer_id=c, model=m, service_tier=t, region=r, cluster=k, hour=h, events=n,
                         **dict(zip(TOKEN_FIELDS, tokens)))
            for (c, m, t, r, k, h), (n, *tokens) in sums.items()]


@pytest.fixture
def demo_month(db):
    """The demo's catalog, prices, month of traffic (as rollups) and fleet, allocated."""
    for customer_id, name in CUSTOMERS:
        Customer.objects.create(customer_id=customer_id, name=name)
    for name, tier in MODELS:
        catalog_model_create(name=name, tier=tier)
    price_book_create(effective_from=datetime(2026, 1, 1, tzinfo=UTC), currency="USD", prices=price_list(),
                      actor="test", as_of=START)
    price_book_create(effective_from=datetime(2026, 10, 15, tzinfo=UTC), currency="USD",
                      prices=price_list(change=MID_MONTH_CHANGE), actor="test", as_of=START)
    traffic = demo_traffic(START, END)
    traffic.invalid_rate = traffic.duplicate_rate = traffic.conflict_rate = 0.0
    HourlyRollup.objects.bulk_create(rollups_of(traffic, DEMO_EVENTS), batch_size=5000)
    fleet_seed(start=START, end=END)
    costs_allocate(start=START, end=END, as_of=END)


def test_the_demo_fleet_is_busy_frontier_profitable_nano_thin_one_cluster_idle(demo_month):
    serving = {name for name, *_, capacity in CLUSTERS if capacity}

    busy = {name: round(share, 2) for name, share in cluster_utilization(start=START, end=END).items()}
    margins = {r.keys["model_tier"]: r.figures.margin_percent_shown
               for r in unit_economics(start=START, end=END, group_by=["model_tier"]).rows}
    clusters = {r.keys["cluster"]: r.figures for r in unit_economics(start=START, end=END, group_by=["cluster"]).rows}

    assert busy.keys() == serving and all(0.40 <= share <= 0.70 for share in busy.values()), busy
    assert margins["frontier"] >= 30 and 0 < margins["mini"] < margins["frontier"], margins
    assert 0 < margins["nano"] <= 15, margins
    assert [name for name, f in clusters.items() if f.tokens == 0] == ["iad-cs3-a"]
    assert clusters["iad-cs3-a"].idle_cost_shown > 0
