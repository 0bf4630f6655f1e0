"""Every usage line says the stretch of time it prices: a price change mid-month splits a
key into two lines, each with its own dates, in the API, the PDF and the CSV."""

import csv
import io
from datetime import UTC, date, datetime

import pytest
from pypdf import PdfReader

from billing.documents import invoice_csv, invoice_pdf
from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
from billing.services.price_books import price_book_create
from billing.models import Invoice
from scripts.demo_pricing import price_list
from tests.billing.conftest import rollup

pytestmark = pytest.mark.django_db
OCT = date(2026, 10, 1)
CHANGE_AT = datetime(2026, 10, 15, tzinfo=UTC)


def at(day: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


@pytest.fixture
def split_invoice(list_prices):
    """gpt-5.4 batch output at 7.50 before the 15th and 6.00 from it; September usage
    arriving after September's invoice was issued."""
    price_book_create(effective_from=CHANGE_AT, currency="USD", prices=price_list(change=("frontier", "output", "12.00")),
                      actor="test", as_of=CHANGE_AT)
    rollup("acme", "gpt-5.4", at(20, 9), input_tokens=1_000)
    invoice_drafts_refresh(customer_ids=["acme"], period=date(2026, 9, 1), as_of=at(1))
    invoice_finalize(invoice_id=Invoice.objects.get(period=date(2026, 9, 1)).pk, actor="test", as_of=at(1))
    rollup("acme", "gpt-5.4", at(25, 9), input_tokens=2_000)  # late
    rollup("acme", "gpt-5.4", at(3), input_tokens=0, output=1_000_000, service_tier="batch")
    rollup("acme", "gpt-5.4", at(20), input_tokens=0, output=2_000_000, service_tier="batch")
    invoice_drafts_refresh(customer_ids=["acme"], period=OCT, as_of=at(31))
    return Invoice.objects.get(period=OCT)


def test_split_lines_carry_the_dates_of_their_price(split_invoice, api_client_for):
    lines = api_client_for("admin").get(f"/api/v1/invoices/{split_invoice.pk}").json()["lines"]

    output = [(l["unit_price"], l["tokens"], l["usage_start"], l["usage_end"]) for l in lines
              if l["kind"] == "usage" and l["token_class"] == "output"]
    assert output == [  # in date order
        ("7.50", 1_000_000, "2026-10-01T00:00:00+00:00", "2026-10-15T00:00:00+00:00"),
        ("6.00", 2_000_000, "2026-10-15T00:00:00+00:00", "2026-11-01T00:00:00+00:00"),
    ]
    late = [l for l in lines if l["kind"] == "late_usage"]
    assert [(l["period"], l["usage_start"], l["usage_end"]) for l in late] == [
        ("2026-09", "2026-09-01T00:00:00+00:00", "2026-10-01T00:00:00+00:00")]


def test_the_pdf_and_csv_show_each_lines_dates(split_invoice):
    invoice = invoice_finalize(invoice_id=split_invoice.pk, actor="test", as_of=datetime(2026, 11, 2, tzinfo=UTC))

    reader = PdfReader(io.BytesIO(invoice_pdf(invoice)))
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())  # cells wrap
    rows = list(csv.DictReader(io.StringIO(invoice_csv(invoice))))

    assert "2026-10-01 – 2026-10-14" in text and "2026-10-15 – 2026-10-31" in text
    assert "2026-09-01 – 2026-09-30" in text
    by_price = {r["unit_price"]: (r["usage_start"], r["usage_end"]) for r in rows if r["token_class"] == "output"}
    assert by_price == {"7.50": ("2026-10-01T00:00:00+00:00", "2026-10-15T00:00:00+00:00"),
                        "6.00": ("2026-10-15T00:00:00+00:00", "2026-11-01T00:00:00+00:00")}
    assert all(r["usage_start"] == "" for r in rows if r["kind"] not in ("usage", "late_usage"))
