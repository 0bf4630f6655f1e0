"""The invoice lifecycle against the real database: drafts, finalization, late usage,
immutability, credit notes, transitions and tenant isolation."""

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from billing.models import BilledUsage, CreditEntry, Invoice
from billing.services.billing_runs import billing_cycle
from billing.services.contracts import contract_put
from billing.services.credits import credit_grant
from billing.services.invoices import credit_note_issue, invoice_drafts_refresh, invoice_finalize
from tests.billing.conftest import rollup

pytestmark = pytest.mark.django_db
OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
AS_OF = datetime(2026, 11, 2, 6, tzinfo=UTC)


def at(day: int, hour: int = 12, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def draft(customer_id: str = "acme", period: date = OCT) -> Invoice:
    invoice_drafts_refresh(customer_ids=[customer_id], period=period, as_of=AS_OF)
    return Invoice.objects.get(customer__customer_id=customer_id, period=period, status="draft")


class TestDraftsAndFinalization:
    def test_every_line_kind_totals_to_an_independent_computation(self, list_prices):
        contract_put(customer_id="acme", effective_from=at(1, 0, 9), effective_to=None,
                     discount_percent=Decimal("12.50"), monthly_minimum=Decimal("100.00"), unit_price_overrides=[],
                     volume_tiers=[], actor="test")
        rollup("acme", "gpt-5.4", at(10, 0, 9), input_tokens=1_000_000)
        invoice_finalize(invoice_id=draft(period=date(2026, 9, 1)).pk, actor="test", as_of=at(1, 6))
        rollup("acme", "gpt-5.4", at(30, 23, 9), input_tokens=2_000_000)  # September usage arriving late
        credit_grant(customer_id="acme", amount=Decimal("20.00"), reason="prepaid", actor="test", as_of=at(2))
        rollup("acme", "gpt-5.4", at(3), input_tokens=4_000_000, cached=1_500_000, output=900_000)
        rollup("acme", "gpt-5.4-mini", at(4), input_tokens=2_000_000, output=300_000, service_tier="priority")

        invoice = invoice_finalize(invoice_id=draft().pk, actor="test", as_of=AS_OF)

        def line(tokens: int, price: str) -> Decimal:  # DESIGN.md §3, computed here independently
            return cents(Decimal(tokens) * Decimal(price) / 1_000_000)

        usage = [line(2_500_000, "2.50"), line(1_500_000, "0.25"), line(900_000, "15.00"),  # ledger class order
                 line(2_000_000, "1.50"), line(300_000, "9.00")]
        late = line(2_000_000, "2.50")
        discount = -cents((sum(usage) + late) * Decimal("12.50") / 100)
        minimum = Decimal("100.00") - (sum(usage) + late + discount)
        lines = list(invoice.lines.all())
        assert [(x.kind, x.amount) for x in lines] == [
            *(("usage", amount) for amount in usage), ("late_usage", late), ("discount", discount),
            ("minimum", minimum), ("credits", Decimal("-20.00"))]
        assert lines[5].usage_period == "2026-09" and lines[5].tokens == 2_000_000
        assert (invoice.subtotal, invoice.total) == (Decimal("100.00"), Decimal("80.00"))
        assert invoice.total == sum(x.amount for x in lines)

    def test_finalization_numbers_snapshots_usage_and_draws_down_credit(self, list_prices):
        credit_grant(customer_id="acme", amount=Decimal("5.00"), reason="prepaid", actor="test", as_of=at(1))
        rollup("acme", "gpt-5.4", at(3), input_tokens=4_000_000)

        invoice = invoice_finalize(invoice_id=draft().pk, actor="user:finance", as_of=AS_OF)

        assert invoice.number == "INV-2026-000001" and invoice.status == "finalized"
        assert invoice.due_at == AS_OF + timedelta(days=30)
        assert invoice.total == Decimal("5.00")  # 10.00 of usage, 5.00 of credit
        assert list(BilledUsage.objects.filter(invoice=invoice).values_list("input_tokens", flat=True)) == [4_000_000]
        assert CreditEntry.objects.get(invoice=invoice).amount == Decimal("-5.00")

    def test_drafts_are_recomputed_and_identical_when_run_twice(self, list_prices):
        rollup("acme", "gpt-5.4", at(3), input_tokens=1_000_000)
        first = draft()
        rollup("acme", "gpt-5.4", at(4), input_tokens=1_000_000)

        second = draft()
        again = draft()

        assert first.pk == second.pk == again.pk
        assert (first.total, second.total, again.total) == (Decimal("2.50"), Decimal("5.00"), Decimal("5.00"))
        assert Invoice.objects.filter(customer__customer_id="acme", period=OCT).count() == 1

    def test_customers_with_nothing_to_bill_get_no_invoice(self, list_prices):
        invoice_drafts_refresh(customer_ids=["acme", "globex"], period=OCT, as_of=AS_OF)

        assert not Invoice.objects.exists()


class TestLateUsage:
    def test_late_usage_lands_once_on_the_next_open_invoice(self, list_prices):
        rollup("acme", "gpt-5.4", at(3), input_tokens=1_000_000)
        october = invoice_finalize(invoice_id=draft().pk, actor="test", as_of=AS_OF)
        rollup("acme", "gpt-5.4", at(31, 23), input_tokens=3_000_000)  # arrives after October is issued
        rollup("acme", "gpt-5.4-nano", at(2, 9, month=11), input_tokens=1_000_000)

        november = draft(period=NOV)
        late = november.lines.get(kind="late_usage")
        issued = invoice_finalize(invoice_id=november.pk, actor="test", as_of=datetime(2026, 12, 2, tzinfo=UTC))
        december = invoice_drafts_refresh(customer_ids=["acme"], period=date(2026, 12, 1), as_of=AS_OF)

        assert (late.usage_period, late.tokens, late.amount) == ("2026-10", 3_000_000, Decimal("7.50"))
        assert "usage of 2026-10" in late.description
        assert october.total == Decimal("2.50") and issued.total == Decimal("7.70")
        assert december == []  # nothing left to bill twice

    def test_a_price_change_after_the_fact_prices_late_usage_at_its_own_hour(self, list_prices):
        from billing.services.price_books import price_book_create
        from scripts.demo_pricing import price_list

        rollup("acme", "gpt-5.4", at(3), input_tokens=1_000_000)
        invoice_finalize(invoice_id=draft().pk, actor="test", as_of=AS_OF)
        price_book_create(effective_from=at(1, 0, 11), currency="USD", as_of=AS_OF, actor="test",
                          prices=price_list(change=("frontier", "input", "5.00")))
        rollup("acme", "gpt-5.4", at(20), input_tokens=1_000_000)
        rollup("acme", "gpt-5.4", at(5, 0, 11), input_tokens=1_000_000)

        november = draft(period=NOV)

        amounts = {(line.kind, line.unit_price): line.amount for line in november.lines.all()}
        assert amounts == {("late_usage", Decimal("2.50")): Decimal("2.50"), ("usage", Decimal("5.00")): Decimal("5.00")}


class TestImmutability:
    @pytest.fixture
    def issued(self, list_prices):
        rollup("acme", "gpt-5.4", at(3), input_tokens=1_000_000)
        return invoice_finalize(invoice_id=draft().pk, actor="test", as_of=AS_OF)

    @pytest.mark.parametrize("statement", [
        "UPDATE billing_invoice SET total = 0 WHERE id = {id}",
        "UPDATE billing_invoice SET status = 'draft', number = NULL WHERE id = {id}",
        "DELETE FROM billing_invoice WHERE id = {id}",
        "UPDATE billing_invoiceline SET amount = 0 WHERE invoice_id = {id}",
        "DELETE FROM billing_invoiceline WHERE invoice_id = {id}",
        "INSERT INTO billing_invoiceline (invoice_id, position, kind, description, model, service_tier, token_class,"
        " tokens, amount, usage_period) VALUES ({id}, 99, 'usage', 'x', '', '', '', 0, 1, '')",
        "UPDATE billing_billedusage SET input_tokens = 0 WHERE invoice_id = {id}",
        "UPDATE billing_invoice SET status = 'paid', total = 0 WHERE id = {id}",
    ])
    def test_issued_invoices_reject_raw_sql_changes(self, issued, statement):
        with pytest.raises(DatabaseError), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement.format(id=issued.pk))

        issued.refresh_from_db()
        assert (issued.status, issued.total) == ("finalized", Decimal("2.50"))

    def test_credit_notes_never_exceed_the_total_and_have_their_own_sequence(self, issued):
        first = credit_note_issue(invoice_id=issued.pk, amount=Decimal("1.00"), reason="x", actor="t", as_of=AS_OF)
        second = credit_note_issue(invoice_id=issued.pk, amount=Decimal("1.50"), reason="y", actor="t", as_of=AS_OF)

        with pytest.raises(Exception, match="At most 0.00"):
            credit_note_issue(invoice_id=issued.pk, amount=Decimal("0.01"), reason="z", actor="t", as_of=AS_OF)
        assert (first.number, second.number) == ("CN-2026-000001", "CN-2026-000002")


class TestApi:
    @pytest.fixture
    def issued(self, list_prices):
        rollup("acme", "gpt-5.4", at(3), input_tokens=1_000_000)
        rollup("globex", "gpt-5.4", at(3), input_tokens=2_000_000)
        invoice_drafts_refresh(customer_ids=["acme", "globex"], period=OCT, as_of=AS_OF)
        acme = Invoice.objects.get(customer__customer_id="acme")
        return invoice_finalize(invoice_id=acme.pk, actor="test", as_of=AS_OF)

    def test_transitions_answer_409_when_the_status_forbids_them(self, issued, api_client_for):
        admin = api_client_for("admin")

        again = admin.post(f"/api/v1/invoices/{issued.pk}/finalize")
        paid = admin.post(f"/api/v1/invoices/{issued.pk}/mark-paid")
        void_paid = admin.post(f"/api/v1/invoices/{issued.pk}/void")
        note = admin.post(f"/api/v1/invoices/{issued.pk}/credit-notes", {"amount": "1.00", "reason": "goodwill"},
                          format="json")
        too_much = admin.post(f"/api/v1/invoices/{issued.pk}/credit-notes", {"amount": "2.00", "reason": "x"},
                              format="json")
        draft_id = Invoice.objects.get(customer__customer_id="globex").pk
        draft_note = admin.post(f"/api/v1/invoices/{draft_id}/credit-notes", {"amount": "1.00", "reason": "x"},
                                format="json")

        assert (again.status_code, again["Content-Type"]) == (409, "application/problem+json")
        assert paid.status_code == 200 and paid.json()["status"] == "paid"
        assert void_paid.status_code == 409
        assert note.status_code == 201 and note.json()["number"] == "CN-2026-000001"
        assert too_much.status_code == 422 and "amount" in too_much.json()["errors"]
        assert draft_note.status_code == 409

    def test_tenant_isolation_on_invoices_documents_and_credit_notes(self, issued, api_client_for):
        acme, globex = api_client_for("customer", "acme"), api_client_for("customer", "globex")
        globex_draft = Invoice.objects.get(customer__customer_id="globex")

        own = acme.get("/api/v1/invoices").json()["results"]
        paths = [f"/api/v1/invoices/{issued.pk}", f"/api/v1/invoices/{issued.pk}/credit-notes",
                 f"/api/v1/invoices/{issued.pk}/csv"]

        assert [i["number"] for i in own] == ["INV-2026-000001"]
        assert all(acme.get(path).status_code == 200 for path in paths)
        assert all(globex.get(path).status_code == 404 for path in paths)
        assert acme.get(f"/api/v1/invoices/{globex_draft.pk}").status_code == 404
        assert acme.post(f"/api/v1/invoices/{issued.pk}/mark-paid").status_code == 403
        assert acme.post(f"/api/v1/invoices/{issued.pk}/credit-notes", {"amount": "1.00", "reason": "x"},
                         format="json").status_code == 403

    def test_invoice_json_has_the_api_fields(self, issued, api_client_for):
        body = api_client_for("admin").get(f"/api/v1/invoices/{issued.pk}").json()

        assert {"id", "number", "customer_id", "period", "status", "currency", "lines", "subtotal", "total",
                "issued_at"} <= body.keys()
        assert body["lines"][0] == {"kind": "usage", "description": "gpt-5.4 standard input tokens", "model": "gpt-5.4",
                                    "service_tier": "standard", "token_class": "input", "tokens": 1_000_000,
                                    "unit_price": "2.50", "amount": "2.50", "period": None,
                                    "usage_start": "2026-10-01T00:00:00+00:00",
                                    "usage_end": "2026-11-01T00:00:00+00:00"}


class TestSchedule:
    def test_the_cycle_finalizes_last_period_only_after_the_grace_period(self, list_prices, settings):
        settings.BILLING_GRACE_HOURS = 24

        early = billing_cycle(as_of=datetime(2026, 11, 1, 12, tzinfo=UTC))
        late = billing_cycle(as_of=datetime(2026, 11, 2, 1, tzinfo=UTC))

        assert [(r.period, r.finalize) for r in early] == [(NOV, False), (OCT, False)]
        assert [(r.period, r.finalize) for r in late] == [(NOV, False)]
