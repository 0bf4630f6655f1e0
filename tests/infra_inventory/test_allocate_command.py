"""`manage.py allocate_costs`: days allocated in parallel processes come out exactly as
allocated one by one, and the fleet's cost is conserved to the micro-dollar."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum

from infra_inventory.models import AllocatedHour, ClusterHourCost, CostAllocation
from tests.infra_inventory.test_allocation import (
    HOUR, SINCE, cluster_make, datacenter_make, hand_fleet_cost, rollup, sku_make,
)

# The command forks its worker processes; the test process has threads of its own (Kafka
# clients of other tests), which Python warns about. The command itself runs none.
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")]


def allocation_state() -> list[tuple]:
    return sorted(CostAllocation.objects.values_list("cluster__name", "hour", "customer_id", "model",
                                                     "hardware_cost", "power_cost", "energy_kwh"))


def test_parallel_days_equal_sequential_days_and_conserve_cost(catalog):
    dc = datacenter_make()
    sku = sku_make()
    cluster_make("iad-a", dc, sku, count=4)
    cluster_make("iad-b", dc, sku, count=2, since=SINCE + timedelta(days=1, hours=5))
    start = SINCE
    for h in range(0, 72, 5):
        rollup("acme", "gpt-5.4", start + h * HOUR, input_tokens=1000 + h, output=40, cluster="iad-a")
        rollup("globex", "gpt-5.4-mini", start + h * HOUR, input_tokens=700, cached=100, output=9, cluster="iad-b")
    window = ["--from", start.isoformat(), "--to", (start + timedelta(days=3)).isoformat()]

    call_command("allocate_costs", *window, "--jobs", "2", stdout=StringIO(), stderr=StringIO())
    parallel = allocation_state()
    call_command("allocate_costs", *window, stdout=StringIO(), stderr=StringIO())

    assert allocation_state() == parallel and parallel
    assert AllocatedHour.objects.count() == 72
    costs = ClusterHourCost.objects.aggregate(h=Sum("hardware_cost"), p=Sum("power_cost"))
    assert costs["h"] + costs["p"] == hand_fleet_cost(start, start + timedelta(days=3))
    assert costs["h"] > Decimal(0)
