"""The demo's capacity sold by the hour (DESIGN.md §2): initech reserves provisioned
throughput of the frontier tier from the middle of the month (its provisioned traffic is
covered by the fee; what spilled over stays billed per token, standard and other tiers),
and hooli rents the whole iad-h200-a cluster for the month's last two days: the demo traffic
(scripts.demo_costs.SHAPES, scripts.traffic.Dedicated) sends all of hooli's us-east frontier
requests there in those days and no one else's, so hooli's usage there is metered, counted on
the rental's line and not priced again, and the cost allocation gives the cluster's whole
cost in those hours to hooli (its idle hours as hooli's reserved idle), refusing nothing.

The rental needs the demo fleet (scripts.demo_costs.fleet_seed) to exist first; without it
the rental is left out, said so, and nothing else changes.
"""

import random
from datetime import datetime, timedelta
from decimal import Decimal

HOUR = timedelta(hours=1)
# Sized to the scale-model fleet (scripts.demo_costs): 2 units at 0.40 a unit-hour is about the
# hourly cost of the frontier capacity initech's provisioned share would take, not a cloud list price.
RESERVATION = {"customer_id": "initech", "model_tier": "frontier", "units": 2, "unit_hour_price": Decimal("0.40")}
RESERVATION_STARTS_DAYS = timedelta(days=14, hours=12)  # mid-month, on the hour
RENTAL = {"customer_id": "hooli", "cluster": "iad-h200-a", "accelerator_hour_price": Decimal("3.20")}
RENTAL_DAYS = timedelta(days=2)  # at the end of the month
PROVISIONED_EVENTS = 400


def _provisioned_traffic(*, start: datetime, end: datetime) -> int:
    """initech's requests served from its reservation, straight into the ledger (as the
    consumer would write them): `service_tier: provisioned`, frontier, after it starts."""
    from metering.consumer.steps import Accepted, Coordinates
    from metering.schemas import Catalog, Rules, event_validate
    from metering.services import ledger_append

    rng = random.Random(7)
    catalog = Catalog(customers=frozenset({"initech"}), models=frozenset({"gpt-5.4"}))
    accepted = []
    hours = int((end - start) / HOUR)
    for i in range(PROVISIONED_EVENTS):
        served = start + rng.randrange(hours) * HOUR + timedelta(seconds=rng.randrange(3600))
        body = {"event_id": f"demo-provisioned-{i:05d}", "customer_id": "initech", "model": "gpt-5.4",
                "timestamp": served.isoformat(), "input_tokens": rng.randrange(20_000, 90_000),
                "cached_input_tokens": 0, "output_tokens": rng.randrange(500, 4_000), "service_tier": "provisioned",
                "region": "us-east", "cluster": "iad-h100-a"}
        rules = Rules(arrived_at=served + timedelta(seconds=2), lateness=timedelta(days=35))
        accepted.append(Accepted(event_validate(body, catalog=catalog, rules=rules),
                                 Coordinates("demo-capacity", 0, i, -1), served + timedelta(seconds=2)))
    ledger_append(accepted=accepted)
    return len(accepted)


def capacity_set_up(*, start: datetime, end: datetime, as_of: datetime) -> list[str]:
    """The reservation, its provisioned traffic, and the rental when the fleet exists.
    Returns the customers with capacity, for the previews."""
    from billing.services.capacity import rental_create, reservation_put
    from infra_inventory.models import Cluster

    starts_at = start + RESERVATION_STARTS_DAYS
    reservation_put(**RESERVATION, starts_at=starts_at, ends_at=None, cluster=None, actor="demo", as_of=as_of)
    events = _provisioned_traffic(start=starts_at, end=end)
    print(f"reservation: initech {RESERVATION['units']} × frontier provisioned throughput from "
          f"{starts_at:%Y-%m-%d %H:%M} UTC at {RESERVATION['unit_hour_price']} per unit-hour; {events} provisioned "
          "requests (price 0: the fee covers them), the rest of its traffic spills over, billed per token")
    customers = ["initech"]
    if Cluster.objects.filter(name=RENTAL["cluster"]).exists():
        rental = rental_create(**RENTAL, starts_at=end - RENTAL_DAYS, ends_at=end, actor="demo", as_of=as_of)
        print(f"rental: hooli rents {rental.cluster.name} ({rental.accelerator_count} accelerators) from "
              f"{rental.starts_at:%Y-%m-%d %H:%M} UTC to the month's end at {RENTAL['accelerator_hour_price']} per "
              "accelerator-hour; its own usage served there is not priced again")
        customers.append("hooli")
    else:
        print(f"rental: left out, cluster {RENTAL['cluster']} is not in the inventory yet (the fleet is seeded later)")
    return customers
