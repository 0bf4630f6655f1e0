"""The whole story: events through Kafka into the ledger, priced, invoiced, a late event
after the period was issued, and a replay of the topic that changes nothing."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Invoice
from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
from billing.services.price_books import price_book_create
from scripts.demo_pricing import price_list
from tests.metering.factories import event
from tests.metering.kafka_helpers import send

pytestmark = pytest.mark.django_db(transaction=True)


def invoices_state() -> list[tuple]:
    return sorted(Invoice.objects.values_list("customer__customer_id", "period", "status", "number", "total"))


def test_events_in_invoice_out_late_event_and_replay(catalog, topics, producer, drain):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    this_month = now.replace(day=1, hour=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    price_book_create(effective_from=last_month - timedelta(days=30), currency="USD", prices=price_list(),
                      actor="test", as_of=now)
    served = this_month - timedelta(hours=6)  # last month, and within the 35-day lateness limit
    for _ in range(4):
        send(producer, topics["usage"], event(timestamp=served.isoformat(), input_tokens=250_000,
                                              cached_input_tokens=0, output_tokens=10_000))
    producer.flush()
    drain()
    invoice_drafts_refresh(customer_ids=["acme"], period=last_month.date(), as_of=now)
    issued = invoice_finalize(invoice_id=Invoice.objects.get(period=last_month.date()).pk, actor="test", as_of=now)

    late = event(timestamp=(served + timedelta(hours=1)).isoformat(), input_tokens=2_000_000, cached_input_tokens=0,
                 output_tokens=0)
    send(producer, topics["usage"], late)
    producer.flush()
    drain()
    invoice_drafts_refresh(customer_ids=["acme"], period=this_month.date(), as_of=now)
    before_replay = invoices_state()
    drain(group=topics["group"] + "-replay")  # the whole topic again, from offset 0
    invoice_drafts_refresh(customer_ids=["acme"], period=this_month.date(), as_of=now)
    invoice_drafts_refresh(customer_ids=["acme"], period=last_month.date(), as_of=now)

    # 1,000,000 input × 2.50 + 40,000 output × 15.00 per 1M = 2.50 + 0.60
    assert issued.total == Decimal("3.10")
    current = Invoice.objects.get(period=this_month.date())
    late_line = current.lines.get(kind="late_usage")
    assert (late_line.tokens, late_line.amount, late_line.usage_period) == (
        2_000_000, Decimal("5.00"), f"{last_month:%Y-%m}")
    assert invoices_state() == before_replay
    assert Invoice.objects.get(pk=issued.pk).total == Decimal("3.10")
    assert date(last_month.year, last_month.month, 1) == issued.period
