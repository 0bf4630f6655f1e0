"""Traffic recorded before the newer token classes existed (events with input, cached input
and output only, on the three original service tiers) is already in the ledger and billed:
last month's invoice issued, this month's a draft. Replaying it, as recorded (the whole topic
again, from offset 0) and as an upgraded gateway would send it again (the newer fields
spelled out as 0), is a no-op: nothing appended, no conflict, and no invoice changes
(DESIGN.md §1: an event that omits the newer fields keeps its identity and its price)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from billing.models import BilledUsage, Invoice
from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
from billing.services.price_books import price_book_create
from metering.models import DeadLetter, HourlyRollup, UsageDuplicate, UsageEvent
from metering.token_classes import FIELDS, NEWER_FIELDS
from scripts.demo_pricing import price_list
from scripts.traffic import Traffic, messages_produce
from tests.metering.kafka_helpers import send

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS = ["acme", "globex"]
RECORDED = 300
BEFORE_FLEX = {"standard": 0.80, "batch": 0.15, "priority": 0.05}


def billing_state() -> dict:
    invoices = Invoice.objects.filter(customer__customer_id__in=CUSTOMERS).order_by("customer__customer_id", "period")
    return {
        (i.customer.customer_id, i.period, i.status, i.number, i.subtotal, i.total):
            [(x.kind, x.description, x.token_class, x.tokens, x.unit_price, x.amount, x.usage_period)
             for x in i.lines.order_by("position")]
        for i in invoices.select_related("customer")
    }


def rollup_state() -> list[tuple]:
    return sorted(HourlyRollup.objects.filter(customer_id__in=CUSTOMERS).values_list(
        "customer_id", "model", "service_tier", "region", "cluster", "hour", "events", *FIELDS))


def billed_usage_state() -> list[tuple]:
    return sorted(BilledUsage.objects.filter(customer_id__in=CUSTOMERS).values_list(
        "invoice__number", "customer_id", "model", "service_tier", "hour", *FIELDS))


def test_replaying_older_traffic_changes_nothing(catalog, topics, producer, drain):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    this_month = now.replace(day=1, hour=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    price_book_create(effective_from=now - timedelta(days=90), currency="USD", prices=price_list(), actor="test",
                      as_of=now)
    traffic = Traffic(customers=CUSTOMERS, models=["gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano"], seed=23,
                      start=now - timedelta(days=30), end=now - timedelta(hours=1), duplicate_rate=0,
                      conflict_rate=0, invalid_rate=0, service_tier_weights=BEFORE_FLEX)
    messages = list(traffic.messages(RECORDED))
    recorded = [json.loads(message.value) for message in messages]
    assert not any(name in body for body in recorded for name in NEWER_FIELDS), "recorded in the older shape"
    messages_produce(producer, topics["usage"], messages)
    drain()
    invoice_drafts_refresh(customer_ids=CUSTOMERS, period=last_month.date(), as_of=now)
    for invoice in Invoice.objects.filter(period=last_month.date(), customer__customer_id__in=CUSTOMERS):
        invoice_finalize(invoice_id=invoice.pk, actor="test", as_of=now)
    invoice_drafts_refresh(customer_ids=CUSTOMERS, period=this_month.date(), as_of=now)
    billed, rolled, billed_usage = billing_state(), rollup_state(), billed_usage_state()

    drain(group=topics["group"] + "-replay")  # the recorded topic again, from offset 0
    for body in recorded:  # and again from an upgraded gateway: the newer fields, all 0
        send(producer, topics["usage"], {**body, **{name: 0 for name in NEWER_FIELDS}}, key=body["customer_id"])
    producer.flush()
    drain()
    invoice_drafts_refresh(customer_ids=CUSTOMERS, period=this_month.date(), as_of=now)
    invoice_drafts_refresh(customer_ids=CUSTOMERS, period=last_month.date(), as_of=now)  # issued: left alone

    assert UsageEvent.objects.filter(customer_id__in=CUSTOMERS).count() == traffic.tally.accepted == RECORDED
    # The topic read again is the same records (a redelivery, known by their coordinates, not
    # counted); the events sent again are new records of known events: exact duplicates.
    assert UsageDuplicate.objects.filter(customer_id__in=CUSTOMERS).count() == RECORDED
    assert not DeadLetter.objects.filter(customer_id__in=CUSTOMERS).exists()  # no conflict, nothing invalid
    assert rollup_state() == rolled
    assert billing_state() == billed
    assert billed_usage_state() == billed_usage
    assert {status for _, _, status, *_ in billed} == {"finalized", "draft"}

