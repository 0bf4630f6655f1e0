"""Re-rating finalized invoices (DESIGN.md §6): adjustments after finalization change no
invoice, are never late usage, and come out as exactly one credit or debit note."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import AuditEntry, CreditNote, DebitNote, Invoice, Rerating, WebhookDelivery, WebhookEndpoint
from billing.rating import round_cents
from billing.services.contracts import contract_put
from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
from billing.services.rerating import invoice_rerate, invoice_rerate_preview, period_rerate_preview
from metering.adjustment_rules import UsageAdjustmentIn
from metering.adjustments import adjustment_apply, rest_source
from metering.consumer.steps import Accepted, Coordinates
from metering.schemas import Catalog, Rules, event_validate
from metering.services import ledger_append
from tests.conftest import at_once
from tests.metering.factories import event

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
SERVED = datetime(2026, 10, 20, 12, tzinfo=UTC)
FINALIZED_AT = datetime(2026, 11, 2, tzinfo=UTC)
CATALOG = Catalog(customers=frozenset({"acme", "globex"}), models=frozenset({"gpt-5.4", "gpt-5.4-mini"}))
BANDS = [{"model_tier": "frontier", "service_tier": "standard", "token_class": "input",
          "bands": [{"up_to": 3_000_000, "unit_price": Decimal("2.50")}, {"up_to": None, "unit_price": Decimal("2.00")}]}]


def served(*bodies, at: datetime = SERVED, offset: int = 0) -> None:
    """Append events served at `at` (arriving a minute later) to the ledger."""
    rules = Rules(arrived_at=at + timedelta(minutes=1), lateness=timedelta(days=35))
    ledger_append(accepted=[
        Accepted(event_validate({**b, "timestamp": at.isoformat()}, catalog=CATALOG, rules=rules),
                 Coordinates("t", 0, offset + i, -1), at + timedelta(minutes=1))
        for i, b in enumerate(bodies)])


def adjust(body: dict, adjustment_id: str, *, replacement: dict | None = None) -> str:
    outcome = adjustment_apply(
        adjustment=UsageAdjustmentIn(adjustment_id, body["customer_id"], body["event_id"],
                                     "replace" if replacement else "void",
                                     None if replacement is None else {
                                         **dict.fromkeys(("cached_input_tokens", "cache_write_tokens",
                                                          "cache_write_long_tokens", "audio_input_tokens",
                                                          "audio_output_tokens", "reasoning_tokens"), 0),
                                         **replacement}, "correction"),
        source=rest_source(), actor="test", as_of=FINALIZED_AT + timedelta(days=3))
    return outcome.status


def finalized(customer_id: str = "acme", period: date = OCT) -> Invoice:
    invoice_drafts_refresh(customer_ids=[customer_id], period=period, as_of=FINALIZED_AT)
    draft = Invoice.objects.get(customer__customer_id=customer_id, period=period, status="draft")
    return invoice_finalize(invoice_id=draft.pk, actor="test", as_of=FINALIZED_AT)


def tokens(input_tokens: int, output_tokens: int = 0) -> dict:
    return {"input_tokens": input_tokens, "cached_input_tokens": 0, "output_tokens": output_tokens}


@pytest.fixture
def banded(list_prices):
    """acme: input of frontier graduated, 2.50 up to 3M tokens a month, 2.00 beyond; 10% off."""
    contract_put(customer_id="acme", effective_from=datetime(2026, 1, 1, tzinfo=UTC), effective_to=None,
                 discount_percent=Decimal("10"), monthly_minimum=None, unit_price_overrides=[], volume_tiers=BANDS,
                 actor="test")


@pytest.mark.django_db
class TestRerating:
    def test_a_void_after_finalization_is_a_credit_note_never_late_usage(self, banded):
        kept, voided = event(**tokens(2_000_000)), event(**tokens(500_000, 100_000))
        served(kept, voided)
        invoice = finalized()

        assert adjust(voided, "adj-1") == "applied"
        preview = invoice_rerate_preview(invoice)
        rerating = invoice_rerate(invoice_id=invoice.pk, reason="test traffic", actor="finance", as_of=FINALIZED_AT)
        again = invoice_rerate(invoice_id=invoice.pk, reason="test traffic", actor="finance", as_of=FINALIZED_AT)
        invoice_drafts_refresh(customer_ids=["acme"], period=NOV, as_of=FINALIZED_AT)

        # billed: 2.5M input × 2.50 = 6.25, 0.1M output × 15.00 = 1.50, −10% = −0.78 → 6.97
        # now:    2.0M input × 2.50 = 5.00, −10% = −0.50 → 4.50; difference −2.47
        assert invoice.total == Decimal("6.97")
        assert preview.difference == Decimal("-2.47")
        assert {(d.kind, d.token_class, d.billed_amount, d.amount) for d in preview.differences} == {
            ("usage", "input", Decimal("6.25"), Decimal("5.00")), ("usage", "output", Decimal("1.50"), Decimal("0")),
            ("discount", "", Decimal("-0.78"), Decimal("-0.50"))}
        assert rerating.credit_note.amount == Decimal("2.47") and rerating.debit_note is None
        assert rerating.credit_note.number.startswith("CN-2026-")
        assert again is None
        assert Invoice.objects.get(pk=invoice.pk).total == Decimal("6.97")  # the invoice itself never changes
        assert not Invoice.objects.filter(period=NOV, customer__customer_id="acme").exists()  # nothing late

    def test_a_replacement_crossing_a_band_is_a_debit_note_to_the_cent(self, banded):
        WebhookEndpoint.objects.create(url="https://erp.example/hooks", secret="s" * 24,
                                       events=["debit_note.issued"])
        body = event(**tokens(2_500_000))
        served(body, event(**tokens(400_000)))
        invoice = finalized()

        adjust(body, "adj-2", replacement=tokens(4_100_000))
        rerating = invoice_rerate(invoice_id=invoice.pk, reason="under-reported", actor="finance", as_of=FINALIZED_AT)

        billed = round_cents(Decimal(2_900_000) * Decimal("2.50") / 1_000_000)
        now_lines = (round_cents(Decimal(3_000_000) * Decimal("2.50") / 1_000_000)
                     + round_cents(Decimal(1_500_000) * Decimal("2.00") / 1_000_000))
        expected = (now_lines - round_cents(now_lines / 10)) - (billed - round_cents(billed / 10))
        assert rerating.debit_note.amount == expected == Decimal("2.93")
        assert rerating.debit_note.number.startswith("DN-2026-")
        assert DebitNote.objects.get(pk=rerating.debit_note.pk).invoice_id == invoice.pk
        assert invoice_rerate_preview(invoice).differences == ()
        sent = WebhookDelivery.objects.get(event="debit_note.issued")
        assert sent.payload["data"] | {"number": rerating.debit_note.number, "amount": "2.93",
                                       "invoice_number": invoice.number, "object": "debit_note"} == sent.payload["data"]
        assert AuditEntry.objects.filter(action="debit_note.issue", object_id=str(rerating.debit_note.pk)).exists()

    def test_adjustments_before_finalization_are_in_the_invoice_not_rerated(self, banded):
        body = event(**tokens(1_000_000))
        served(body, event(**tokens(1_000_000)))
        adjust(body, "adj-3")

        invoice = finalized()

        assert invoice.total == Decimal("2.25")  # 1M × 2.50 − 10%
        assert invoice.adjustments_through > 0
        assert invoice_rerate_preview(invoice).differences == ()

    def test_late_events_stay_late_usage_and_the_period_preview_lists_changed_invoices(self, banded):
        acme, globex = event(**tokens(1_000_000)), event(customer_id="globex", **tokens(1_000_000))
        served(acme, globex)
        invoices = [finalized("acme"), finalized("globex")]
        late = event(**tokens(2_000_000))
        served(late, at=SERVED + timedelta(hours=1), offset=10)

        adjust(acme, "adj-4", replacement=tokens(1_200_000))
        previews = period_rerate_preview(period=OCT)
        invoice_drafts_refresh(customer_ids=["acme"], period=NOV, as_of=FINALIZED_AT)

        assert [p.invoice.pk for p in previews] == [invoices[0].pk]
        assert previews[0].difference == Decimal("0.45")  # 0.2M × 2.50 − 10%
        late_line = Invoice.objects.get(period=NOV, customer__customer_id="acme").lines.get(kind="late_usage")
        assert late_line.tokens == 2_000_000  # the late event only, not the adjustment

    def test_only_finalized_invoices_are_rerated(self, banded, api_client_for):
        served(event(**tokens(1_000_000)))
        invoice_drafts_refresh(customer_ids=["acme"], period=OCT, as_of=FINALIZED_AT)
        draft = Invoice.objects.get(period=OCT)

        response = api_client_for("admin").post(f"/api/v1/invoices/{draft.pk}/rerate-preview")

        assert response.status_code == 409

    def test_rest_preview_then_apply_and_scope(self, banded, api_client_for):
        body = event(**tokens(1_000_000))
        served(body)
        invoice = finalized()
        adjust(body, "adj-5")
        admin = api_client_for("admin")

        preview = admin.post(f"/api/v1/invoices/{invoice.pk}/rerate-preview")
        applied = admin.post(f"/api/v1/invoices/{invoice.pk}/rerate", {"reason": "voided"}, format="json")
        again = admin.post(f"/api/v1/invoices/{invoice.pk}/rerate", {"reason": "voided"}, format="json")
        customer = api_client_for("customer", "acme").post(f"/api/v1/invoices/{invoice.pk}/rerate-preview")

        assert preview.status_code == 200
        assert preview.json()["difference"] == "-2.25"
        assert preview.json()["lines"][0]["billed_tokens"] == 1_000_000
        assert applied.status_code == 201
        assert applied.json()["document"]["kind"] == "credit_note"
        assert (again.status_code, again.json()["difference"]) == (200, "0.00")
        assert customer.status_code == 403


@pytest.mark.django_db(transaction=True)
def test_concurrent_applies_issue_one_document(catalog, settings):
    from billing.services.price_books import price_book_create
    from scripts.demo_pricing import price_list

    price_book_create(effective_from=datetime(2026, 1, 1, tzinfo=UTC), currency="USD", prices=price_list(),
                      actor="test", as_of=datetime(2026, 1, 1, tzinfo=UTC))
    body = event(**tokens(1_000_000))
    served(body)
    invoice = finalized()
    adjust(body, "adj-6", replacement=tokens(3_000_000))
    errors = at_once(lambda: invoice_rerate(invoice_id=invoice.pk, reason="race", actor="finance",
                                            as_of=FINALIZED_AT), threads=4)

    assert errors == []
    assert Rerating.objects.filter(invoice=invoice).count() == 1
    note = DebitNote.objects.get(invoice=invoice)
    assert note.amount == Decimal("5.00")  # 2M more input × 2.50
    assert not CreditNote.objects.filter(invoice=invoice).exists()
