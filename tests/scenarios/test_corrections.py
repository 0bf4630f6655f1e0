"""Corrections end to end (DESIGN.md §6): a month of traffic through Kafka, invoiced and
finalized; then a voided event, a replaced event crossing a graduated band and a
corrective price book, each re-rated against an independent computation of DESIGN.md §3
for the whole period; gapless numbers under concurrent applies; a replay of the whole
topic that changes nothing; tenant isolation on adjustments and debit notes."""

import json
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from billing.models import CreditNote, DebitNote, Invoice, PriceBook, Rerating
from billing.services.contracts import contract_put
from billing.services.invoices import invoice_drafts_refresh, invoices_issue
from billing.services.price_books import price_book_create
from billing.services.rerating import period_rerate, period_rerate_preview
from metering.models import HourlyRollup, UsageAdjustment
from scripts.demo_pricing import price_list
from tests.conftest import at_once

pytestmark = pytest.mark.django_db(transaction=True)

OCT = date(2026, 10, 1)
START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
FINALIZED_AT = datetime(2026, 11, 2, 6, tzinfo=UTC)
BAND_UP_TO = 30_000_000
PRICES = {("gpt-5.4", "input"): Decimal("2.50"), ("gpt-5.4", "cached_input"): Decimal("0.25"),
          ("gpt-5.4", "output"): Decimal("15.00"), ("gpt-5.4-mini", "input"): Decimal("0.75"),
          ("gpt-5.4-mini", "cached_input"): Decimal("0.075"), ("gpt-5.4-mini", "output"): Decimal("4.50")}
CORRECTED_MINI_OUTPUT = Decimal("4.00")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def expected_owed(events: dict[str, dict], customer_id: str, prices: dict) -> Decimal:
    """DESIGN.md §3 for one customer's period, computed apart from the rating engine: tokens
    summed over the period per (model, class), priced once per line; acme's frontier input
    in two graduated bands and 10% off."""
    sums: dict[tuple, int] = defaultdict(int)
    for body in events.values():
        if body["customer_id"] == customer_id:
            sums[(body["model"], "input")] += body["input_tokens"] - body["cached_input_tokens"]
            sums[(body["model"], "cached_input")] += body["cached_input_tokens"]
            sums[(body["model"], "output")] += body["output_tokens"]
    lines = []
    for (model, token_class), tokens in sums.items():
        if customer_id == "acme" and (model, token_class) == ("gpt-5.4", "input"):
            lines.append(cents(Decimal(min(tokens, BAND_UP_TO)) * Decimal("2.50") / 1_000_000))
            lines.append(cents(Decimal(max(tokens - BAND_UP_TO, 0)) * Decimal("2.00") / 1_000_000))
        elif tokens:
            lines.append(cents(Decimal(tokens) * prices[(model, token_class)] / 1_000_000))
    usage = sum(lines, Decimal(0))
    return usage - cents(usage * 10 / 100) if customer_id == "acme" else usage


def month_of_traffic() -> dict[str, dict]:
    """~10 events a day for each customer, each hour of the month its own."""
    rng, events = random.Random(11), {}
    hour = START
    while hour < END:
        for customer_id in ("acme", "globex"):
            if rng.random() < 0.4:
                cached = rng.randrange(0, 50_000)
                body = {"event_id": f"{customer_id}-{hour:%d%H}", "customer_id": customer_id,
                        "model": rng.choice(["gpt-5.4", "gpt-5.4-mini"]), "timestamp": hour.isoformat(),
                        "input_tokens": cached + rng.randrange(50_000, 250_000), "cached_input_tokens": cached,
                        "output_tokens": rng.randrange(1_000, 40_000), "service_tier": "standard"}
                events[body["event_id"]] = body
        hour += timedelta(hours=1)
    return events


def produce(producer, topic: str, value: dict, *, at: datetime) -> None:
    """As a gateway would: keyed by customer, stamped with its arrival time."""
    producer.send(topic, key=value["customer_id"].encode(), value=json.dumps(value).encode(),
                  timestamp_ms=int(at.timestamp() * 1000))


def state() -> tuple:
    return (sorted(Invoice.objects.values_list("number", "total")),
            sorted(CreditNote.objects.values_list("number", "amount")),
            sorted(DebitNote.objects.values_list("number", "amount")),
            list(UsageAdjustment.objects.order_by("pk").values_list("pk", "adjustment_id")),
            list(HourlyRollup.objects.order_by("pk").values()))


def apply_period_twice_at_once() -> None:
    """Two finance managers press Apply at the same moment."""
    assert at_once(lambda: period_rerate(period=OCT, reason="correction", actor="finance", as_of=FINALIZED_AT),
                   threads=2) == []


def issued_since(counts: dict) -> dict[int, Decimal]:
    """Per invoice, the signed amount of the notes issued since `counts` was taken."""
    signed = {}
    for rerating in Rerating.objects.filter(pk__gt=counts["rerating"]).select_related("credit_note", "debit_note"):
        signed[rerating.invoice_id] = signed.get(rerating.invoice_id, Decimal(0)) + rerating.difference
    return signed


def test_a_month_corrected_three_ways(catalog, topics, producer, drain, api_client_for):
    book = price_book_create(effective_from=datetime(2026, 1, 1, tzinfo=UTC), currency="USD", prices=price_list(),
                             actor="test", as_of=START)
    contract_put(customer_id="acme", effective_from=datetime(2026, 1, 1, tzinfo=UTC), effective_to=None,
                 discount_percent=Decimal("10"), monthly_minimum=None, unit_price_overrides=[], actor="test",
                 volume_tiers=[{"model_tier": "frontier", "service_tier": "standard", "token_class": "input",
                                "bands": [{"up_to": BAND_UP_TO, "unit_price": Decimal("2.50")},
                                          {"up_to": None, "unit_price": Decimal("2.00")}]}])
    events = month_of_traffic()
    for body in events.values():
        produce(producer, topics["usage"], body, at=datetime.fromisoformat(body["timestamp"]) + timedelta(seconds=5))
    producer.flush()
    drain()
    invoice_drafts_refresh(customer_ids=["acme", "globex"], period=OCT, as_of=FINALIZED_AT)
    issued = {i.customer.customer_id: i for i in invoices_issue(customer_ids=["acme", "globex"], period=OCT,
                                                                 actor="billing-run", as_of=FINALIZED_AT)}
    assert {c: i.total for c, i in issued.items()} == {c: expected_owed(events, c, PRICES) for c in issued}
    acme_frontier = sorted((b for b in events.values() if b["customer_id"] == "acme" and b["model"] == "gpt-5.4"),
                           key=lambda b: b["input_tokens"])
    frontier_input = sum(b["input_tokens"] - b["cached_input_tokens"] for b in acme_frontier)
    assert frontier_input < BAND_UP_TO  # so the replacement below crosses into the second band
    documents = []

    # (a) a voided event, through Kafka
    voided = acme_frontier[0]
    produce(producer, topics["usage"], {"adjustment_id": "void-1", "customer_id": "acme", "event_id": voided["event_id"],
                                        "action": "void", "reason": "test traffic"}, at=FINALIZED_AT)
    producer.flush()
    drain()
    before = {c: expected_owed(events, c, PRICES) for c in issued}
    del events[voided["event_id"]]
    counts = {"rerating": Rerating.objects.order_by("-pk").values_list("pk", flat=True).first() or 0}
    preview = period_rerate_preview(period=OCT)
    apply_period_twice_at_once()
    assert [p.invoice.customer.customer_id for p in preview] == ["acme"]
    assert issued_since(counts) == {issued["acme"].pk: expected_owed(events, "acme", PRICES) - before["acme"]}
    assert issued_since(counts)[issued["acme"].pk] < 0
    documents.append("CN")

    # (b) a replaced event with more tokens, crossing the graduated band boundary
    replaced = acme_frontier[-1]
    extra = BAND_UP_TO - frontier_input + 4_000_000
    replacement = {"input_tokens": replaced["input_tokens"] + extra, "cached_input_tokens": replaced["cached_input_tokens"],
                   "output_tokens": replaced["output_tokens"]}
    produce(producer, topics["usage"], {"adjustment_id": "replace-1", "customer_id": "acme",
                                        "event_id": replaced["event_id"], "action": "replace",
                                        "replacement": replacement, "reason": "under-reported prompt"},
            at=FINALIZED_AT)
    producer.flush()
    drain()
    before = {c: expected_owed(events, c, PRICES) for c in issued}
    events[replaced["event_id"]] = {**replaced, **replacement}
    counts = {"rerating": Rerating.objects.order_by("-pk").values_list("pk", flat=True).first()}
    apply_period_twice_at_once()
    assert issued_since(counts) == {issued["acme"].pk: expected_owed(events, "acme", PRICES) - before["acme"]}
    assert issued_since(counts)[issued["acme"].pk] > 0
    documents.append("DN")

    # (c) a corrective price book: mini output was 4.50 in October, it should have been 4.00
    before = {c: expected_owed(events, c, PRICES) for c in issued}
    corrected = {**PRICES, ("gpt-5.4-mini", "output"): CORRECTED_MINI_OUTPUT}
    prices = [dict(p, unit_price=CORRECTED_MINI_OUTPUT) if (p["model_tier"], p["service_tier"], p["token_class"])
              == ("mini", "standard", "output") else p for p in price_list()]
    price_book_create(effective_from=book.effective_from, currency="USD", prices=prices, corrects=book.pk,
                      note="mini output was mispriced", actor="finance", as_of=FINALIZED_AT)
    counts = {"rerating": Rerating.objects.order_by("-pk").values_list("pk", flat=True).first()}
    preview = period_rerate_preview(period=OCT)
    apply_period_twice_at_once()
    assert {p.invoice.customer.customer_id for p in preview} == {"acme", "globex"}
    assert issued_since(counts) == {i.pk: expected_owed(events, c, corrected) - before[c] for c, i in issued.items()}
    assert all(amount < 0 for amount in issued_since(counts).values())

    # gapless numbers, each document once, the invoices untouched
    credit_numbers = sorted(CreditNote.objects.values_list("number", flat=True))
    debit_numbers = sorted(DebitNote.objects.values_list("number", flat=True))
    assert credit_numbers == [f"CN-{FINALIZED_AT.year}-{n:06d}" for n in range(1, 4)]
    assert debit_numbers == [f"DN-{FINALIZED_AT.year}-000001"]
    assert {c: Invoice.objects.get(pk=i.pk).total for c, i in issued.items()} == {c: i.total for c, i in issued.items()}
    assert period_rerate(period=OCT, reason="again", actor="finance", as_of=FINALIZED_AT) == []
    assert PriceBook.objects.get(pk=book.pk).prices.get(model_tier="mini", service_tier="standard",
                                                         token_class="output").unit_price == Decimal("4.50")

    # a replay of the whole topic changes nothing; the rollups agree with the ledger
    kept = state()
    drain(group=topics["group"] + "-replay")
    assert state() == kept
    out = StringIO()
    call_command("verify_projections", stdout=out)
    assert "agree" in out.getvalue()

    # tenant isolation
    globex = api_client_for("customer", "globex")
    acme_debit = DebitNote.objects.get()
    assert globex.get("/api/v1/usage-adjustments").json()["results"] == []
    assert globex.get(f"/api/v1/debit-notes/{acme_debit.pk}").status_code == 404
    assert globex.get(f"/api/v1/debit-notes/{acme_debit.pk}/pdf").status_code == 404
    acme = api_client_for("customer", "acme")
    assert [a["adjustment_id"] for a in acme.get("/api/v1/usage-adjustments").json()["results"]] == [
        "replace-1", "void-1"]
    assert acme.get(f"/api/v1/debit-notes/{acme_debit.pk}").json()["number"] == debit_numbers[0]
