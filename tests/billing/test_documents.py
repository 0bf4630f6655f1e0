"""Invoice and credit note documents: PDFs a reader can parse and that say what the invoice
says, over several pages when needed, and a CSV whose amounts add up to the total exactly."""

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from pypdf import PdfReader

from billing.documents import CSV_HEADER, credit_note_pdf, invoice_csv, invoice_pdf
from billing.models import CreditNote, Invoice, InvoiceLine
from metering.models import Customer
from tests.conftest import utc

COMPUTED_AT = utc(2026, 11, 1, 2, 0)
ISSUED_AT = utc(2026, 11, 2, 9, 30)
LINES = [  # kind, description, model, token class, tokens, unit price, amount, usage period
    ("usage", "gpt-5.4 standard input tokens", "gpt-5.4", "input", 1_234_567, "2.500000", "3.09", ""),
    ("usage", "gpt-5.4 standard cached input tokens", "gpt-5.4", "cached_input", 2_000_000, "0.123456", "0.25", ""),
    ("late_usage", "gpt-5.4-mini standard input tokens (usage of 2026-09)", "gpt-5.4-mini", "input", 2_000_000,
     "0.400000", "0.80", "2026-09"),
    ("discount", "Discount 10%", "", "", 0, None, "-0.41", ""),
    ("minimum", "Monthly minimum commitment 100", "", "", 0, None, "96.27", ""),
    ("credits", "Prepaid credits applied", "", "", 0, None, "-40.00", ""),
]
SUBTOTAL, TOTAL = Decimal("100.00"), Decimal("60.00")


def pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def invoice_draft(*, lines: list[InvoiceLine], subtotal: Decimal, total: Decimal) -> Invoice:
    customer = Customer.objects.create(customer_id="acme", name="Acme & Sons <Labs>", email="ap@acme.example")
    invoice = Invoice.objects.create(customer=customer, period=date(2026, 10, 1), computed_at=COMPUTED_AT,
                                     subtotal=subtotal, total=total)
    for position, line in enumerate(lines, start=1):
        line.invoice, line.position = invoice, position
    InvoiceLine.objects.bulk_create(lines)  # while draft: the trigger freezes lines of an issued invoice
    return invoice


def issued(invoice: Invoice) -> Invoice:
    invoice.status, invoice.number = Invoice.Status.FINALIZED, "INV-2026-000007"
    invoice.issued_at, invoice.due_at = ISSUED_AT, ISSUED_AT + timedelta(days=30)
    invoice.save()
    return invoice


@pytest.fixture
def draft(db):
    lines = [InvoiceLine(kind=kind, description=description, model=model, service_tier="standard" if model else "",
                         token_class=token_class, tokens=tokens, unit_price=None if price is None else Decimal(price),
                         amount=Decimal(amount), usage_period=period)
             for kind, description, model, token_class, tokens, price, amount, period in LINES]
    return invoice_draft(lines=lines, subtotal=SUBTOTAL, total=TOTAL)


@pytest.fixture
def credit_note(draft):
    invoice = issued(draft)
    return CreditNote.objects.create(invoice=invoice, number="CN-2026-000001", amount=Decimal("15.50"),
                                     reason="Outage on 2026-10-14 & 15: SLA credit", created_by="finance-anna",
                                     created_at=utc(2026, 11, 20, 12, 0))


@pytest.mark.django_db
class TestInvoicePdf:
    def test_states_number_customer_period_lines_and_total(self, draft):
        invoice = issued(draft)

        pages, text = pdf_text(invoice_pdf(invoice))

        assert pages == 1
        for expected in ("INV-2026-000007", "Acme & Sons <Labs>", "Customer ID: acme", "ap@acme.example", "2026-10",
                         "2026-11-02", "2026-12-02", "Finalized", "USD", "Tokenledger Inference Co.", "1,234,567",
                         "0.123456", "2026-09", "Discount 10%", "-40.00", "100.00", "60.00"):
            assert expected in text

    def test_a_draft_is_labelled_draft_and_not_payable(self, draft):
        _, text = pdf_text(invoice_pdf(draft))

        assert "DRAFT" in text
        assert "Not payable" in text
        assert "INV-" not in text

    def test_the_same_invoice_renders_to_the_same_bytes(self, draft):
        first, second = invoice_pdf(draft), invoice_pdf(draft)

        assert first == second

    def test_lists_credit_notes_and_the_amount_remaining(self, credit_note):
        _, text = pdf_text(invoice_pdf(credit_note.invoice))

        assert "CN-2026-000001" in text
        assert "-15.50" in text
        assert "44.50" in text

    def test_a_long_invoice_runs_over_pages_with_the_header_repeated(self, db):
        lines = [InvoiceLine(kind="usage", description=f"model-{n:03} standard input tokens", model=f"model-{n:03}",
                             service_tier="standard", token_class="input", tokens=1_000_000,
                             unit_price=Decimal("1.000000"), amount=Decimal("1.00")) for n in range(300)]
        invoice = invoice_draft(lines=lines, subtotal=Decimal("300.00"), total=Decimal("300.00"))

        pages, text = pdf_text(invoice_pdf(invoice))

        assert pages > 1
        assert text.count("Unit price / 1M") == pages
        assert "model-000 standard" in text and "model-299 standard" in text
        assert "300.00" in text


@pytest.mark.django_db
def test_credit_note_pdf_names_itself_the_invoice_and_the_amount(credit_note):
    pages, text = pdf_text(credit_note_pdf(credit_note))

    assert pages == 1
    for expected in ("CN-2026-000001", "INV-2026-000007", "2026-10", "15.50", "2026-11-20", "Acme & Sons <Labs>",
                     "Outage on 2026-10-14 & 15: SLA credit"):
        assert expected in text


@pytest.mark.django_db
def test_invoice_csv_has_a_row_per_line_summing_to_the_total(draft):
    rows = list(csv.DictReader(io.StringIO(invoice_csv(draft))))

    assert tuple(rows[0]) == CSV_HEADER
    assert [row["kind"] for row in rows] == [line[0] for line in LINES]
    assert sum((Decimal(row["amount"]) for row in rows), Decimal(0)) == draft.total
    assert [row["unit_price"] for row in rows[:3]] == ["2.50", "0.123456", "0.40"]
    assert rows[2]["usage_period"] == "2026-09"
    assert {row["currency"] for row in rows} == {"USD"}
    assert rows[3]["tokens"] == "" and rows[0]["tokens"] == "1234567"
