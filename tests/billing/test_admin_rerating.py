"""The period re-rating page in admin: everyone in finance sees the preview; only a finance
manager applies it, and only through the confirming step with a reason."""

from decimal import Decimal

import pytest

from billing.models import AuditEntry, CreditNote, Rerating
from tests.billing.test_rerating import OCT, adjust, finalized, served, tokens
from tests.metering.factories import event

pytestmark = pytest.mark.django_db
PREVIEW = "/admin/billing/rerating/preview/"


@pytest.fixture
def voided_after_finalization(list_prices):
    """acme's October finalized at 2.50 for 1M input; then its event voided."""
    body = event(**tokens(1_000_000))
    served(body)
    invoice = finalized()
    adjust(body, "adj-admin")
    return invoice


def test_viewer_sees_the_invoices_a_correction_changes_and_the_total(voided_after_finalization, viewer):
    page = viewer.get(PREVIEW, {"period": "2026-10"})

    text = page.content.decode()
    assert page.status_code == 200
    assert voided_after_finalization.number in text
    assert "total impact <span class=\"rerate-total\">-2.50</span>" in text
    assert "Apply" not in text
    assert viewer.post(PREVIEW, {"period": "2026-10", "apply": "yes", "reason": "x"}).status_code == 403
    assert not Rerating.objects.exists()


def test_manager_applies_after_confirming_with_a_reason(voided_after_finalization, manager):
    confirming = manager.post(PREVIEW, {"period": "2026-10", "apply": "confirm"})
    without_reason = manager.post(PREVIEW, {"period": "2026-10", "apply": "yes", "reason": " "})
    nothing_yet = Rerating.objects.count()

    applied = manager.post(PREVIEW, {"period": "2026-10", "apply": "yes", "reason": "test traffic voided"},
                           follow=True)
    again = manager.post(PREVIEW, {"period": "2026-10", "apply": "yes", "reason": "twice"}, follow=True)

    assert "Yes, issue them" in confirming.content.decode()
    assert without_reason.status_code == 302 and nothing_yet == 0
    note = CreditNote.objects.get(invoice=voided_after_finalization)
    assert note.amount == Decimal("2.50") and note.reason == "test traffic voided"
    assert note.number in applied.content.decode()
    assert "Nothing to issue" in again.content.decode()
    assert AuditEntry.objects.filter(action="invoice.rerate", actor__contains="manager").count() == 1


def test_a_bad_period_is_a_form_error(list_prices, viewer):
    page = viewer.get(PREVIEW, {"period": "2026-13"})

    assert page.status_code == 200
    assert "Give a month as YYYY-MM." in page.content.decode()


def test_the_rerating_list_links_to_the_preview(voided_after_finalization, manager):
    manager.post(PREVIEW, {"period": "2026-10", "apply": "yes", "reason": "voided"})

    page = manager.get("/admin/billing/rerating/")

    assert page.status_code == 200
    assert PREVIEW in page.content.decode()
    assert voided_after_finalization.number in page.content.decode()
