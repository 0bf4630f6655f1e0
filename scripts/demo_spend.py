"""The demo's spend-control step (DESIGN.md §7): this month's traffic reaches the ledger
through Kafka and, in the same transactions, each customer's live balance; budgets set
mid-way are crossed by the next traffic and each threshold is announced once; a gateway
reads balances over the REST API, and the hard budget that is used up says no."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

BUDGETS = {  # customer: (limit as a multiple of its spend so far, thresholds, hard)
    "acme": (Decimal("2.5"), [50, 80, 100], False),
    "globex": (Decimal("1.5"), [90, 100], True),
    "umbrella": (Decimal("10"), [50, 80, 100], True),
}
CREDIT = ("umbrella", Decimal("1.3"))  # prepaid credit as a multiple of its spend so far


def spend_show(*, bootstrap: str, customers: list[str], consume, events: int = 6_000) -> None:
    """`consume(expected)` runs the ledger consumer until it has read `expected` more elements."""
    from django.conf import settings
    from django.test import Client
    from kafka import KafkaProducer

    from billing.models import SpendAlert
    from billing.services.credits import credit_grant
    from billing.services.spend import balance_read, budget_put
    from metering.services import api_key_create
    from scripts.demo import demo_traffic
    from scripts.traffic import messages_produce

    now = datetime.now(UTC)
    start = max(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now - timedelta(hours=6))
    traffic = demo_traffic(start, now - timedelta(minutes=1), seed=13)  # event ids of its own
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for half in (1, 2):
        messages_produce(producer, settings.KAFKA_USAGE_TOPIC, traffic.messages(events // 2, batch_size=100))
        consume(events // 2)
        if half == 1:
            spent = {c: balance_read(customer_id=c, as_of=datetime.now(UTC)).spend for c in BUDGETS}
            print(f"{events // 2:,} events served since {start:%Y-%m-%d %H:%M} UTC: live spend "
                  + ", ".join(f"{c} {s:.2f}" for c, s in spent.items()))
            for customer_id, (multiple, thresholds, hard) in BUDGETS.items():
                limit = max((spent[customer_id] * multiple).quantize(Decimal("1")), Decimal("1"))
                budget_put(customer_id=customer_id, monthly_limit=limit, thresholds=thresholds, hard=hard,
                           actor="demo-finance", as_of=datetime.now(UTC))
                print(f"budget {customer_id}: {limit:.2f} a month, thresholds {thresholds}, "
                      f"{'hard' if hard else 'soft'}")
            customer_id, multiple = CREDIT
            credit = max((spent[customer_id] * multiple).quantize(Decimal("1")), Decimal("1"))
            credit_grant(customer_id=customer_id, amount=credit, reason="prepaid", actor="demo-finance",
                         as_of=datetime.now(UTC))
            print(f"prepaid credit {customer_id}: {credit:.2f}")
    producer.close()
    print(f"\n{events // 2:,} more events through Kafka; alerts announced (once each, in the consumer's transactions):")
    for alert in SpendAlert.objects.select_related("customer").order_by("created_at", "id"):
        print(f"  {alert.kind:25} {alert.customer.customer_id:9} {alert.key:12} spend {alert.spend:>9.2f} "
              f"of {alert.limit:.2f}")
    _, key = api_key_create(scope="ingest", name="demo-gateway")
    gateway = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    print("\na gateway asks before serving (GET /api/v1/customers/{id}/balance):")
    for customer_id in BUDGETS:
        print(f"  {json.dumps(gateway.get(f'/api/v1/customers/{customer_id}/balance').json())}")
    matches = all(_equals_preview(c) for c in customers)
    print(f"live spend equals a full rating of the month (usage, capacity, discount) for all "
          f"{len(customers)} customers: {'ok' if matches else 'MISMATCH'}")


def _equals_preview(customer_id: str) -> bool:
    from billing.selectors import upcoming_invoice
    from billing.services.spend import balance_read

    now = datetime.now(UTC)
    _, _, rated = upcoming_invoice(customer_id=customer_id, as_of=now)
    preview = sum((line.amount for line in rated.lines if line.kind in ("usage", "capacity", "discount")), Decimal(0))
    return balance_read(customer_id=customer_id, as_of=now).spend == preview
