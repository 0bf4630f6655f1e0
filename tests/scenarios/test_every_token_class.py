"""Every token class a provider bills, end to end: events with cache writes (5 minutes and
1 hour), audio in and out and reasoning, one of them as Anthropic's own usage object, on the
standard and flex tiers, through Kafka into the ledger; then the usage report, the invoice
preview, the issued invoice's lines, its PDF and its CSV, each amount to the cent against
the hand computation below (list prices of scripts/demo_pricing.py)."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing.documents import invoice_csv, invoice_pdf
from billing.models import Invoice
from billing.selectors import upcoming_invoice
from billing.services.contracts import contract_put
from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
from billing.services.price_books import price_book_create
from metering.models import DeadLetter
from scripts.demo_pricing import price_list
from tests.metering.factories import event
from tests.metering.kafka_helpers import send

pytestmark = pytest.mark.django_db(transaction=True)

ANTHROPIC = json.loads((Path(__file__).parent.parent / "metering" / "provider_usage"
                        / "anthropic_cache_read_and_writes.json").read_text())["usage"]
TOKEN_FIELDS_OFF = {"input_tokens": ..., "cached_input_tokens": ..., "output_tokens": ...}  # factory: left out


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def line(tokens: int, price: str) -> Decimal:  # DESIGN.md §3, computed here independently
    return cents(Decimal(tokens) * Decimal(price) / 1_000_000)


# (model, service tier, class) → (tokens, unit price): sums of the events sent below, by hand.
# Frontier standard: A + B + the Anthropic usage (40 uncached + 3,000 read + 300 / 1,200 written, 512 out).
EXPECTED = {
    ("gpt-5.4", "flex", "input"): (2_500_000, "1.25"),  # C: 3,000,000 − 500,000 written; half of 2.50
    ("gpt-5.4", "flex", "cache_write"): (500_000, "1.5625"),
    ("gpt-5.4", "flex", "output"): (100_000, "7.50"),
    ("gpt-5.4", "standard", "input"): (710_000 + 222_222 + 40, "2.50"),
    ("gpt-5.4", "standard", "cached_input"): (800_000 + 1_000_000 + 3_000, "0.25"),
    ("gpt-5.4", "standard", "cache_write_long"): (150_000 + 1_200, "5.00"),
    ("gpt-5.4", "standard", "audio_input"): (40_000, "20.00"),
    ("gpt-5.4", "standard", "output"): (470_000 + 77_777 + 512, "15.00"),  # reasoning included
    ("gpt-5.4", "standard", "audio_output"): (30_000, "60.00"),
    ("gpt-5.4-mini", "standard", "input"): (150_000, "0.75"),
    ("gpt-5.4-mini", "standard", "audio_input"): (450_000, "6.00"),
    ("gpt-5.4-mini", "standard", "output"): (10_000, "4.50"),
    ("gpt-5.4-mini", "standard", "audio_output"): (80_000, "15.00"),  # the contract's price, not 18.00
}
# 5-minute cache writes of frontier standard (300,000 + 12,345 + 300) walk the contract's bands:
# 300,000 at 3.125, the other 12,645 at 2.50.
CACHE_WRITE_BANDS = [(300_000, "3.125"), (12_645, "2.50")]


def events_sent(served: datetime) -> list[dict]:
    at = [(served - timedelta(hours=h)).isoformat() for h in range(5)]
    return [
        event(timestamp=at[0], input_tokens=2_000_000, cached_input_tokens=800_000, cache_write_tokens=300_000,  # A
              cache_write_long_tokens=150_000, audio_input_tokens=40_000, output_tokens=500_000,
              audio_output_tokens=30_000, reasoning_tokens=200_000),
        event(timestamp=at[1], input_tokens=1_234_567, cached_input_tokens=1_000_000, cache_write_tokens=12_345,  # B
              output_tokens=77_777, reasoning_tokens=50_000),
        event(timestamp=at[2], service_tier="flex", input_tokens=3_000_000, cached_input_tokens=0,  # C
              cache_write_tokens=500_000, output_tokens=100_000),
        event(timestamp=at[3], model="gpt-5.4-mini", input_tokens=600_000, cached_input_tokens=0,  # D: speech
              audio_input_tokens=450_000, output_tokens=90_000, audio_output_tokens=80_000),
        event(timestamp=at[4], **TOKEN_FIELDS_OFF, provider_usage={"format": "anthropic.messages", "usage": ANTHROPIC}),
    ]


@pytest.fixture
def month_billed(catalog, topics, producer, drain):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    this_month = now.replace(day=1, hour=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    price_book_create(effective_from=last_month - timedelta(days=30), currency="USD", prices=price_list(),
                      actor="test", as_of=now)
    contract_put(customer_id="acme", effective_from=last_month, effective_to=None, discount_percent=Decimal(0),
                 monthly_minimum=None, actor="test",
                 unit_price_overrides=[{"model_tier": "mini", "service_tier": "standard",
                                        "token_class": "audio_output", "unit_price": Decimal("15.00")}],
                 volume_tiers=[{"model_tier": "frontier", "service_tier": "standard", "token_class": "cache_write",
                                "bands": [{"up_to": 300_000, "unit_price": Decimal("3.125")},
                                          {"up_to": None, "unit_price": Decimal("2.50")}]}])
    for body in events_sent(this_month - timedelta(hours=2)):  # last month, within the lateness limit
        send(producer, topics["usage"], body)
    producer.flush()
    drain()
    preview = upcoming_invoice(customer_id="acme", as_of=this_month - timedelta(hours=1))[2]
    draft, = invoice_drafts_refresh(customer_ids=["acme"], period=last_month.date(), as_of=now)
    issued = invoice_finalize(invoice_id=draft.pk, actor="test", as_of=now)
    return {"issued": issued, "preview": preview, "start": last_month, "end": this_month}


def expected_lines() -> list[tuple]:
    """(model, service tier, class, tokens, unit price, amount) in invoice order: by model and
    service tier, then classes in the ledger's order, the bands of one stretch the dearest first."""
    rows = []
    for key, (tokens, price) in EXPECTED.items():
        rows.append((*key, tokens, Decimal(price), line(tokens, price)))
    rows += [("gpt-5.4", "standard", "cache_write", tokens, Decimal(price), line(tokens, price))
             for tokens, price in CACHE_WRITE_BANDS]
    order = ("input", "cached_input", "cache_write", "cache_write_long", "audio_input", "output", "audio_output")
    return sorted(rows, key=lambda r: (r[0], r[1], order.index(r[2]), -r[4]))


def test_every_class_is_invoiced_to_the_cent(month_billed):
    issued, preview = month_billed["issued"], month_billed["preview"]

    lines = list(issued.lines.order_by("position"))

    assert not DeadLetter.objects.filter(customer_id="acme").exists()
    assert [(x.model, x.service_tier, x.token_class, x.tokens, x.unit_price, x.amount) for x in lines] == \
        expected_lines()
    # 15.33 frontier standard (2.33 + 0.45 + 0.94 + 0.03 + 0.76 + 0.80 + 8.22 + 1.80), 4.66 flex (3.13 + 0.78 + 0.75),
    # 4.06 mini (0.11 + 2.70 + 0.05 + 1.20)
    assert issued.total == Decimal("24.05") == sum(r[5] for r in expected_lines())
    assert [(x.kind, x.description, x.amount) for x in preview.lines] == \
        [(x.kind, x.description, x.amount) for x in lines]
    assert [x.description for x in lines if x.model == "gpt-5.4" and x.service_tier == "standard"] == [
        "gpt-5.4 standard input tokens", "gpt-5.4 standard cached input tokens",
        "gpt-5.4 standard 5-minute cache write tokens", "gpt-5.4 standard 5-minute cache write tokens",
        "gpt-5.4 standard 1-hour cache write tokens", "gpt-5.4 standard audio input tokens",
        "gpt-5.4 standard output tokens", "gpt-5.4 standard audio output tokens"]


def test_the_pdf_and_the_csv_say_the_same(month_billed):
    issued = Invoice.objects.get(pk=month_billed["issued"].pk)

    reader = PdfReader(io.BytesIO(invoice_pdf(issued)))
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    rows = list(csv.DictReader(io.StringIO(invoice_csv(issued))))

    assert [(r["model"], r["service_tier"], r["token_class"], int(r["tokens"]), Decimal(r["unit_price"]),
             Decimal(r["amount"])) for r in rows] == expected_lines()
    assert sum(Decimal(r["amount"]) for r in rows) == issued.total
    for words in ("gpt-5.4-mini standard audio output tokens", "gpt-5.4 flex 5-minute cache write tokens",
                  "1-hour cache write", "audio input tokens", "24.05"):
        assert words in text, words
    for model, service_tier, token_class, tokens, price, amount in expected_lines():
        assert f"{tokens:,}" in text and f"{amount:,.2f}" in text


def test_usage_rows_carry_every_field_and_rate_every_class(month_billed, api_client_for):
    start, end = month_billed["start"], month_billed["end"]

    rows = api_client_for("customer", "acme").get("/api/v1/usage", {
        "start": start.isoformat(), "end": end.isoformat(), "group_by": "model,service_tier"}).json()["results"]

    by_key = {(r["model"], r["service_tier"]): r for r in rows}
    assert {k: v for k, v in by_key[("gpt-5.4", "standard")].items() if k.endswith("tokens") or k == "events"} == {
        "events": 3, "input_tokens": 2_000_000 + 1_234_567 + 4_540, "cached_input_tokens": 1_803_000,
        "output_tokens": 500_000 + 77_777 + 512, "cache_write_tokens": 312_645, "cache_write_long_tokens": 151_200,
        "audio_input_tokens": 40_000, "audio_output_tokens": 30_000, "reasoning_tokens": 250_000}
    assert (by_key[("gpt-5.4-mini", "standard")]["audio_input_tokens"],
            by_key[("gpt-5.4-mini", "standard")]["audio_output_tokens"]) == (450_000, 80_000)
    # At the unit prices in force (book and contract prices, no bands): cache writes all at 3.125 = 0.98.
    assert {k: r["amount"] for k, r in by_key.items()} == {
        ("gpt-5.4", "standard"): "15.34", ("gpt-5.4", "flex"): "4.66", ("gpt-5.4-mini", "standard"): "4.06"}
