"""Credit and debit notes on their own: the REST list, detail and PDF of each kind, scoped to
the key's customer; their PDFs, with the re-rating's lines when a re-rating issued them; the
invoice's JSON and PDF counting debit notes; and their read-only admin pages."""

import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from pypdf import PdfReader

from billing.documents import credit_note_pdf, debit_note_pdf, invoice_pdf
from billing.models import CreditNote, DebitNote, Invoice, InvoiceLine, Rerating
from metering.models import Customer
from tests.conftest import utc

PROBLEM = "application/problem+json"
ISSUED_AT = utc(2026, 11, 2, 9, 30)
UNDER_BILLED = [  # acme's re-rating: an adjustment raised the input tokens, the minimum fell away
    {"kind": "usage", "model": "gpt-5.4", "service_tier": "standard", "token_class": "input", "period": None,
     "billed_tokens": 4_000_000, "tokens": 9_000_000, "billed_amount": "10.00", "amount": "22.50",
     "difference": "12.50"},
    {"kind": "late_usage", "model": "gpt-5.4-mini", "service_tier": "flex", "token_class": "output",
     "period": "2026-09", "billed_tokens": 1_000_000, "tokens": 1_500_000, "billed_amount": "1.60", "amount": "2.40",
     "difference": "0.80"},
    {"kind": "minimum", "model": "", "service_tier": "", "token_class": "", "period": None, "billed_tokens": 0,
     "tokens": 0, "billed_amount": "0.96", "amount": "0.00", "difference": "-0.96"},
]
OVER_BILLED = [  # globex's: an event voided
    {"kind": "usage", "model": "gpt-5.4-nano", "service_tier": "priority", "token_class": "cached_input",
     "period": None, "billed_tokens": 8_000_000, "tokens": 0, "billed_amount": "3.20", "amount": "0.00",
     "difference": "-3.20"},
]


def pdf_text(data: bytes) -> str:
    """The text of every page, runs of whitespace as one space (a table cell wraps its text)."""
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(data)).pages)


def finalized(customer: Customer, *, number: str, total: str) -> Invoice:
    invoice = Invoice.objects.create(customer=customer, period=date(2026, 10, 1), computed_at=utc(2026, 11, 1, 2),
                                     subtotal=Decimal(total), total=Decimal(total))
    InvoiceLine.objects.create(invoice=invoice, position=1, kind="usage", description="gpt-5.4 standard input tokens",
                               model="gpt-5.4", service_tier="standard", token_class="input", tokens=4_000_000,
                               unit_price=Decimal("2.500000"), amount=Decimal(total))  # lines only while draft
    invoice.status, invoice.number = Invoice.Status.FINALIZED, number
    invoice.issued_at, invoice.due_at = ISSUED_AT, ISSUED_AT + timedelta(days=30)
    invoice.save()
    return invoice


@pytest.fixture
def notes(catalog) -> dict[str, CreditNote | DebitNote]:
    """acme: a credit note by hand and a debit note from a re-rating; globex: the other way round."""
    acme, globex = catalog
    acme_invoice = finalized(acme, number="INV-2026-000001", total="10.96")
    globex_invoice = finalized(globex, number="INV-2026-000002", total="3.20")
    made = {
        "acme_credit": CreditNote.objects.create(invoice=acme_invoice, number="CN-2026-000001", amount=Decimal("2.00"),
                                                 reason="SLA & goodwill", created_by="user:anna",
                                                 created_at=utc(2026, 11, 10, 12)),
        "acme_debit": DebitNote.objects.create(invoice=acme_invoice, number="DN-2026-000001", amount=Decimal("12.34"),
                                               reason="Usage corrected: gpt-5.4 <input>", created_by="user:bob",
                                               created_at=utc(2026, 11, 12, 8)),
        "globex_debit": DebitNote.objects.create(invoice=globex_invoice, number="DN-2026-000002",
                                                 amount=Decimal("1.00"), reason="Setup fee missed",
                                                 created_by="user:anna", created_at=utc(2026, 11, 11, 8)),
        "globex_credit": CreditNote.objects.create(invoice=globex_invoice, number="CN-2026-000002",
                                                   amount=Decimal("3.20"), reason="Event voided",
                                                   created_by="user:bob", created_at=utc(2026, 11, 13, 8)),
    }
    Rerating.objects.create(invoice=acme_invoice, difference=Decimal("12.34"), lines=UNDER_BILLED, billed_after={},
                            reason="Usage corrected: gpt-5.4 <input>", created_by="user:bob",
                            created_at=utc(2026, 11, 12, 8), debit_note=made["acme_debit"])
    Rerating.objects.create(invoice=globex_invoice, difference=Decimal("-3.20"), lines=OVER_BILLED, billed_after={},
                            reason="Event voided", created_by="user:bob", created_at=utc(2026, 11, 13, 8),
                            credit_note=made["globex_credit"])
    return made


def numbers(response) -> list[str]:
    return [note["number"] for note in response.json()["results"]]


@pytest.mark.django_db
class TestNoteApi:
    def test_admin_lists_every_note_of_a_kind_newest_first(self, notes, api_client_for):
        client = api_client_for("admin")

        debit, credit = client.get("/api/v1/debit-notes"), client.get("/api/v1/credit-notes")

        assert (debit.status_code, debit.json()["next"]) == (200, None)
        assert numbers(debit) == ["DN-2026-000001", "DN-2026-000002"]
        assert numbers(credit) == ["CN-2026-000002", "CN-2026-000001"]

    def test_filters_by_customer_and_by_invoice(self, notes, api_client_for):
        client = api_client_for("admin")

        by_customer = client.get("/api/v1/debit-notes", {"customer_id": "globex"})
        by_invoice = client.get("/api/v1/credit-notes", {"invoice_id": notes["acme_credit"].invoice_id})

        assert numbers(by_customer) == ["DN-2026-000002"]
        assert numbers(by_invoice) == ["CN-2026-000001"]

    def test_a_filter_that_is_no_id_is_a_422(self, notes, api_client_for):
        response = api_client_for("admin").get("/api/v1/debit-notes", {"invoice_id": "INV-2026-000001"})

        assert (response.status_code, response["Content-Type"]) == (422, PROBLEM)
        assert "invoice_id" in response.json()["errors"]

    def test_paginates_with_next(self, notes, api_client_for):
        response = api_client_for("admin").get("/api/v1/debit-notes", {"limit": 1})

        assert numbers(response) == ["DN-2026-000001"]
        assert "offset=1" in response.json()["next"]

    def test_a_note_from_a_rerating_carries_its_lines(self, notes, api_client_for):
        note = notes["acme_debit"]

        response = api_client_for("admin").get(f"/api/v1/debit-notes/{note.pk}")

        assert response.status_code == 200
        assert response.json() == {
            "id": note.pk, "number": "DN-2026-000001", "invoice_id": note.invoice_id,
            "invoice_number": "INV-2026-000001", "customer_id": "acme", "amount": "12.34", "currency": "USD",
            "reason": "Usage corrected: gpt-5.4 <input>", "created_by": "user:bob",
            "created_at": "2026-11-12T08:00:00+00:00",
            "rerating": {"difference": "12.34", "lines": [
                {**UNDER_BILLED[0]},
                {**UNDER_BILLED[1]},
                {**UNDER_BILLED[2], "model": None, "service_tier": None, "token_class": None},
            ]},
        }

    def test_a_note_issued_by_hand_has_no_rerating(self, notes, api_client_for):
        note = notes["acme_credit"]

        body = api_client_for("admin").get(f"/api/v1/credit-notes/{note.pk}").json()

        assert (body["number"], body["amount"], body["rerating"]) == ("CN-2026-000001", "2.00", None)

    @pytest.mark.parametrize("kind", ["credit", "debit"])
    def test_pdf_is_the_note_with_its_number(self, notes, api_client_for, kind):
        note = notes[f"acme_{kind}"]

        response = api_client_for("admin").get(f"/api/v1/{kind}-notes/{note.pk}/pdf")

        assert (response.status_code, response["Content-Type"]) == (200, "application/pdf")
        assert response["Content-Disposition"] == f'attachment; filename="{note.number}.pdf"'
        assert response.content[:5] == b"%PDF-"
        assert note.number in pdf_text(response.content)

    def test_pdf_refuses_another_type_after_the_lookup(self, notes, api_client_for):
        note = notes["acme_debit"]

        response = api_client_for("admin").get(f"/api/v1/debit-notes/{note.pk}/pdf", HTTP_ACCEPT="application/json")

        assert (response.status_code, response["Content-Type"]) == (406, PROBLEM)


@pytest.mark.django_db
class TestCustomerKey:
    def test_lists_only_its_own_notes_whatever_it_filters_by(self, notes, api_client_for):
        client = api_client_for("customer", "acme")

        debit, credit = client.get("/api/v1/debit-notes"), client.get("/api/v1/credit-notes")
        filtered = client.get("/api/v1/debit-notes", {"customer_id": "globex"})

        assert numbers(debit) == ["DN-2026-000001"]
        assert numbers(credit) == ["CN-2026-000001"]
        assert numbers(filtered) == []

    def test_reads_its_own_note_and_its_pdf(self, notes, api_client_for):
        note = notes["acme_debit"]
        client = api_client_for("customer", "acme")

        detail, pdf = client.get(f"/api/v1/debit-notes/{note.pk}"), client.get(f"/api/v1/debit-notes/{note.pk}/pdf")

        assert detail.json()["number"] == "DN-2026-000001"
        assert pdf.content[:5] == b"%PDF-"

    @pytest.mark.parametrize("path", ["debit-notes/{globex_debit}", "debit-notes/{globex_debit}/pdf",
                                      "credit-notes/{globex_credit}", "credit-notes/{globex_credit}/pdf"])
    def test_another_customers_note_is_404_as_if_it_did_not_exist(self, notes, api_client_for, path):
        ids = {name: note.pk for name, note in notes.items()}
        client = api_client_for("customer", "acme")

        accept = "application/pdf" if path.endswith("/pdf") else "application/json"
        response = client.get(f"/api/v1/{path.format(**ids)}", HTTP_ACCEPT=accept)
        missing = client.get(f"/api/v1/{path.format(globex_debit=987654321, globex_credit=987654321)}")

        assert (response.status_code, response["Content-Type"]) == (404, PROBLEM)
        assert response.json() == missing.json()

    def test_an_ingest_key_reads_no_notes(self, notes, api_client_for):
        client = api_client_for("ingest")

        responses = [client.get("/api/v1/debit-notes"), client.get(f"/api/v1/credit-notes/{notes['acme_credit'].pk}")]

        assert [r.status_code for r in responses] == [403, 403]


@pytest.mark.django_db
class TestInvoiceJson:
    def test_shows_what_debit_notes_add_next_to_what_credit_notes_take_back(self, notes, api_client_for):
        invoice_id = notes["acme_debit"].invoice_id

        body = api_client_for("customer", "acme").get(f"/api/v1/invoices/{invoice_id}").json()

        assert (body["total"], body["credited"], body["debited"]) == ("10.96", "2.00", "12.34")
        assert [(n["id"], n["number"]) for n in body["debit_notes"]] == [(notes["acme_debit"].pk, "DN-2026-000001")]
        assert [(n["id"], n["number"]) for n in body["credit_notes"]] == [(notes["acme_credit"].pk, "CN-2026-000001")]

    def test_an_invoice_without_debit_notes_has_debited_zero(self, catalog, api_client_for):
        invoice = finalized(catalog[0], number="INV-2026-000009", total="5.00")

        body = api_client_for("admin").get(f"/api/v1/invoices/{invoice.pk}").json()

        assert (body["debited"], body["debit_notes"]) == ("0.00", [])


@pytest.mark.django_db
class TestNotePdfs:
    def test_a_debit_note_names_itself_the_invoice_the_amount_and_the_rerating_lines(self, notes):
        text = pdf_text(debit_note_pdf(notes["acme_debit"]))

        for expected in ("Debit note DN-2026-000001", "INV-2026-000001 (period 2026-10)", "Amount debited", "12.34",
                         "2026-11-12", "Usage corrected: gpt-5.4 <input>", "gpt-5.4 standard input",
                         "4,000,000", "9,000,000", "10.00", "22.50", "12.50",
                         "gpt-5.4-mini flex output (usage of 2026-09)", "1,500,000", "-0.96",
                         "Monthly minimum commitment", "Difference (now − billed)"):
            assert expected in text, expected

    def test_a_credit_note_from_a_rerating_lists_its_lines_and_its_amount(self, notes):
        text = pdf_text(credit_note_pdf(notes["globex_credit"]))

        for expected in ("Credit note CN-2026-000002", "Re-rating of invoice INV-2026-000002",
                         "gpt-5.4-nano priority cached_input", "8,000,000", "-3.20", "Amount credited"):
            assert expected in text, expected

    def test_a_note_issued_by_hand_has_no_rerating_section(self, notes):
        credit, debit = pdf_text(credit_note_pdf(notes["acme_credit"])), pdf_text(debit_note_pdf(notes["globex_debit"]))

        assert "CN-2026-000001" in credit and "DN-2026-000002" in debit
        assert "Re-rating" not in credit and "Re-rating" not in debit

    def test_the_same_note_renders_to_the_same_bytes(self, notes):
        assert debit_note_pdf(notes["acme_debit"]) == debit_note_pdf(notes["acme_debit"])

    def test_the_invoice_lists_its_debit_notes_and_what_remains_owed(self, notes):
        text = pdf_text(invoice_pdf(notes["acme_debit"].invoice))

        for expected in ("Credit notes issued against this invoice", "CN-2026-000001", "SLA & goodwill",
                         "Debit notes issued against this invoice", "DN-2026-000001",
                         "Usage corrected: gpt-5.4 <input>", "Debit notes issued", "12.34"):
            assert expected in text, expected
        assert "Amount remaining 21.30" in text  # 10.96 − 2.00 + 12.34


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:billing_{name}", args=args)


@pytest.mark.django_db
class TestAdmin:
    def test_a_viewer_finds_debit_notes_and_reads_the_rerating(self, viewer, notes):
        note = notes["acme_debit"]

        listing = viewer.get(admin_url("debitnote_changelist"))
        page = viewer.get(admin_url("debitnote_change", note.pk))

        assert listing.status_code == page.status_code == 200
        assert "DN-2026-000001" in listing.content.decode() and "DN-2026-000002" in listing.content.decode()
        html = page.content.decode()
        assert "gpt-5.4-mini flex output (usage of 2026-09)" in html and "9000000" in html
        assert admin_url("debitnote_pdf", note.pk) in html

    @pytest.mark.parametrize("kind", ["creditnote", "debitnote"])
    def test_a_viewer_downloads_a_notes_pdf(self, viewer, notes, kind):
        note = notes["acme_debit" if kind == "debitnote" else "acme_credit"]

        response = viewer.get(admin_url(f"{kind}_pdf", note.pk))

        assert (response.status_code, response["Content-Type"]) == (200, "application/pdf")
        assert response.content[:5] == b"%PDF-" and note.number in pdf_text(response.content)

    def test_the_invoice_page_shows_debited_and_its_debit_notes(self, viewer, notes):
        invoice = notes["acme_debit"].invoice

        html = viewer.get(admin_url("invoice_change", invoice.pk)).content.decode()

        assert "debited by debit notes" in html.lower() and "12.34 USD" in html
        assert "21.30 USD" in html  # the amount remaining
        assert "DN-2026-000001" in html and admin_url("debitnote_pdf", notes["acme_debit"].pk) in html

    def test_nobody_adds_or_changes_a_debit_note_superusers_included(self, root, notes):
        note = notes["acme_debit"]

        add = root.get(admin_url("debitnote_add"))
        change = root.post(admin_url("debitnote_change", note.pk), {"amount": "1.00", "reason": "x"})

        assert (add.status_code, change.status_code) == (403, 403)
        assert DebitNote.objects.get(pk=note.pk).amount == Decimal("12.34")
