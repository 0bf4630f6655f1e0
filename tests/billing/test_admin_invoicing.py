"""Billing admin for finance staff, operations side: invoices and their lifecycle actions
through the services, credit notes, billing runs, the audit log and webhooks.

Invoices are real drafts: a contract with a monthly minimum and no usage gives a draft
with one minimum line (no published prices needed), finalized by the service itself, as
the triggers allow nothing else."""

import re
from datetime import date
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import AuditEntry, BillingRun, CreditNote, Invoice, WebhookDelivery, WebhookEndpoint
from billing.services.contracts import contract_put
from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
from metering.models import Customer, HourlyRollup
from metering.services import catalog_model_create
from tests.conftest import utc

OCTOBER = date(2026, 10, 1)


def url(name: str, *args) -> str:
    return reverse(f"admin:billing_{name}", args=args)


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def offered_actions(response) -> set[str]:
    form = response.context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


def act(client: Client, name: str, *invoices: Invoice, follow: bool = True, **data):
    return client.post(url("invoice_changelist"), {"action": name, "_selected_action": [i.pk for i in invoices],
                                                   **data}, follow=follow)


def draft_for(customer_id: str, *, minimum: str = "100.00") -> Invoice:
    Customer.objects.get_or_create(customer_id=customer_id, defaults={"name": customer_id.title()})
    contract_put(customer_id=customer_id, effective_from=utc(2026, 1, 1), effective_to=None,
                 discount_percent=Decimal(0), monthly_minimum=Decimal(minimum), unit_price_overrides=[],
                 volume_tiers=[], actor="test")
    [draft] = invoice_drafts_refresh(customer_ids=[customer_id], period=OCTOBER, as_of=utc(2026, 11, 1, 6))
    return draft


def finalized_for(customer_id: str, *, minimum: str = "100.00") -> Invoice:
    draft = draft_for(customer_id, minimum=minimum)
    return invoice_finalize(invoice_id=draft.pk, actor="user:setup", as_of=utc(2026, 11, 2, 9))


@pytest.fixture
def draft(db):
    return draft_for("acme")


@pytest.fixture
def finalized(db):
    return finalized_for("globex", minimum="250.00")


@pytest.fixture
def delivery(db):
    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/tl", secret="s3cret-signing-key-0042",
                                              events=["invoice.finalized"])
    return WebhookDelivery.objects.create(endpoint=endpoint, event="invoice.finalized", created_at=utc(2026, 11, 2),
                                          payload={"type": "invoice.finalized", "data": {"number": "INV-2026-000777"}},
                                          attempts=3, last_status_code=502, last_error="HTTP 502")


@pytest.mark.django_db
class TestFinanceViewer:
    def test_sees_invoices_runs_audit_and_deliveries(self, viewer, draft, finalized, delivery):
        BillingRun.objects.create(period=OCTOBER, requested_by="schedule", created_at=utc(2026, 11, 2))

        pages = {name: viewer.get(url(name)) for name in
                 ("invoice_changelist", "billingrun_changelist", "auditentry_changelist",
                  "webhookdelivery_changelist", "creditnote_changelist")}
        detail = viewer.get(url("invoice_change", finalized.pk))

        assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 200)
        assert offered_actions(pages["invoice_changelist"]) == set()
        assert "HTTP 502" in pages["webhookdelivery_changelist"].content.decode()
        assert detail.status_code == 200
        assert "Finalize" not in detail.context["object_actions"] and detail.context["object_actions"] == []
        assert "250.00" in detail.content.decode()

    def test_cannot_run_invoice_actions(self, viewer, draft, finalized):
        responses = [act(viewer, "finalize", draft, confirm="yes"), act(viewer, "void", finalized, confirm="yes"),
                     act(viewer, "issue_credit_note", finalized, apply="yes", amount="10.00", reason="goodwill")]

        assert all(r.status_code in (200, 403) for r in responses)
        draft.refresh_from_db()
        finalized.refresh_from_db()
        assert (draft.status, finalized.status) == (Invoice.Status.DRAFT, Invoice.Status.FINALIZED)
        assert not CreditNote.objects.filter(invoice=finalized).exists()

    def test_cannot_start_a_run(self, viewer):
        page = viewer.get(url("billingrun_add"))
        posted = viewer.post(url("billingrun_add"), {"period": "2026-10"})

        assert (page.status_code, posted.status_code) == (403, 403)
        assert not BillingRun.objects.filter(requested_by="user:viewer").exists()

    def test_sees_an_endpoint_but_never_its_secret(self, viewer, delivery):
        listing = viewer.get(url("webhookendpoint_changelist")).content.decode()
        detail = viewer.get(url("webhookendpoint_change", delivery.endpoint.pk)).content.decode()

        assert "s3cret-signing-key-0042" not in listing + detail
        assert "••••••••0042" in listing and "••••••••0042" in detail


@pytest.mark.django_db
class TestInvoiceActions:
    def test_finalize_asks_first_then_numbers_the_draft(self, manager, draft):
        asked = act(manager, "finalize", draft)
        draft.refresh_from_db()
        assert asked.status_code == 200 and "Yes, finalize" in asked.content.decode()
        assert draft.status == Invoice.Status.DRAFT

        done = act(manager, "finalize", draft, confirm="yes")

        draft.refresh_from_db()
        assert draft.status == Invoice.Status.FINALIZED
        assert re.fullmatch(r"INV-\d{4}-\d{6}", draft.number)
        assert done.redirect_chain[-1][0] == url("invoice_change", draft.pk)
        assert messages_of(done)[0][0] == "success" and draft.number in messages_of(done)[0][1]

    def test_marks_paid_and_voids_finalized_invoices(self, manager, finalized):
        voidable = finalized_for("initech")

        act(manager, "mark_paid", finalized, confirm="yes")
        act(manager, "void", voidable, confirm="yes")

        finalized.refresh_from_db()
        voidable.refresh_from_db()
        assert (finalized.status, voidable.status) == (Invoice.Status.PAID, Invoice.Status.VOID)
        assert finalized.paid_at is not None and voidable.voided_at is not None

    def test_a_state_conflict_is_an_error_message(self, manager, finalized, draft):
        response = act(manager, "void", finalized, draft, confirm="yes")

        finalized.refresh_from_db()
        draft.refresh_from_db()
        assert (finalized.status, draft.status) == (Invoice.Status.VOID, Invoice.Status.DRAFT)
        levels = sorted(level for level, _ in messages_of(response))
        assert levels == ["error", "success"]
        assert any("only a finalized invoice can become void" in text for _, text in messages_of(response))

    def test_usage_without_a_price_is_an_error_message(self, manager, draft):
        catalog_model_create(name="gpt-unpriced", tier="frontier")
        HourlyRollup.objects.create(customer_id="acme", model="gpt-unpriced", service_tier="standard",
                                    hour=utc(2026, 10, 5, 10), events=1, input_tokens=1_000, cached_input_tokens=0,
                                    output_tokens=500)

        response = act(manager, "finalize", draft, confirm="yes")

        draft.refresh_from_db()
        assert draft.status == Invoice.Status.DRAFT
        [(level, text)] = messages_of(response)
        assert level == "error" and "No price for frontier/standard" in text

    def test_the_invoice_page_offers_what_its_status_allows(self, manager, draft, finalized):
        draft_page = manager.get(url("invoice_change", draft.pk))
        finalized_page = manager.get(url("invoice_change", finalized.pk))

        assert [name for name, _ in draft_page.context["object_actions"]] == ["finalize"]
        assert [name for name, _ in finalized_page.context["object_actions"]] == ["mark_paid", "void",
                                                                                   "issue_credit_note"]
        assert "Monthly minimum commitment" in finalized_page.content.decode()  # the line, in the read-only inline

    def test_nothing_is_editable(self, manager, finalized):
        posted = manager.post(url("invoice_change", finalized.pk), {"status": "draft"})
        added = manager.get(url("invoice_add"))
        deleted = manager.post(url("invoice_delete", finalized.pk), {"post": "yes"})

        assert (posted.status_code, added.status_code, deleted.status_code) == (403, 403, 403)

    def test_issues_a_credit_note_through_its_form(self, manager, finalized):
        form = act(manager, "issue_credit_note", finalized)
        assert form.status_code == 200 and "250.00 USD remains to credit" in form.content.decode()

        done = act(manager, "issue_credit_note", finalized, apply="yes", amount="30.00", reason="SLA breach")

        note = CreditNote.objects.get(invoice=finalized)
        assert (note.amount, note.reason, note.created_by) == (Decimal("30.00"), "SLA breach", "user:manager")
        assert re.fullmatch(r"CN-\d{4}-\d{6}", note.number)
        assert done.redirect_chain[-1][0] == url("invoice_change", finalized.pk)
        assert note.number in done.content.decode()

    def test_a_credit_note_larger_than_what_remains_is_refused(self, manager, finalized):
        act(manager, "issue_credit_note", finalized, apply="yes", amount="200.00", reason="first")

        response = act(manager, "issue_credit_note", finalized, apply="yes", amount="60.00", reason="too much")

        assert response.status_code == 200
        assert ("error", f"{finalized}: At most 50.00 of 250.00 remains to credit.") in messages_of(response)
        assert response.context["form"].errors["amount"] == ["Must not exceed 50.00."]
        assert list(CreditNote.objects.filter(invoice=finalized).values_list("amount", flat=True)) == [
            Decimal("200.00")]

    def test_a_credit_note_is_for_one_invoice_and_a_positive_amount(self, manager, finalized):
        other = finalized_for("initech")

        two = act(manager, "issue_credit_note", finalized, other)
        zero = act(manager, "issue_credit_note", finalized, apply="yes", amount="0", reason="nothing")

        assert ("error", "Select exactly one invoice to issue a credit note on.") in messages_of(two)
        assert "amount" in zero.context["form"].errors
        assert not CreditNote.objects.filter(invoice__in=[finalized, other]).exists()

    def test_the_audit_log_records_who_did_what(self, manager, draft):
        act(manager, "finalize", draft, confirm="yes")
        act(manager, "mark_paid", draft, confirm="yes")
        act(manager, "issue_credit_note", draft, apply="yes", amount="10.00", reason="goodwill")

        note = CreditNote.objects.get(invoice=draft)
        entries = AuditEntry.objects.filter(actor="user:manager").order_by("id")
        assert [(e.action, e.object_type, e.object_id) for e in entries] == [
            ("invoice.finalize", "billing.Invoice", str(draft.pk)), ("invoice.paid", "billing.Invoice", str(draft.pk)),
            ("credit_note.issue", "billing.CreditNote", str(note.pk))]


@pytest.mark.django_db
class TestInvoiceList:
    def test_shows_the_sum_of_the_filtered_totals(self, manager, draft, finalized):
        every = manager.get(url("invoice_changelist"), {"period": "2026-10"})
        finalized_only = manager.get(url("invoice_changelist"), {"period": "2026-10", "status__exact": "finalized"})

        assert every.context["totals"] == [{"count": 2, "void": 0, "total": "350.00 USD"}]
        assert "350.00 USD" in every.content.decode()
        assert finalized_only.context["totals"] == [{"count": 1, "void": 0, "total": "250.00 USD"}]

    def test_filters_by_customer_and_period(self, manager, draft, finalized):
        by_customer = manager.get(url("invoice_changelist"), {"customer__id__exact": finalized.customer_id})
        by_period = manager.get(url("invoice_changelist"), {"period": "2026-09"})

        assert list(by_customer.context["cl"].result_list) == [finalized]
        assert list(by_period.context["cl"].result_list) == []
        assert by_period.context["totals"] == []


@pytest.mark.django_db
class TestInvoiceDocuments:
    def test_pdf_and_csv_download_with_the_invoice_number(self, viewer, finalized):
        pytest.importorskip("billing.documents")

        pdf = viewer.get(url("invoice_pdf", finalized.pk))
        csv = viewer.get(url("invoice_csv", finalized.pk))

        assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
        assert pdf["Content-Disposition"] == f'attachment; filename="{finalized.number}.pdf"'
        assert csv["Content-Disposition"] == f'attachment; filename="{finalized.number}.csv"'
        assert csv["Content-Type"].startswith("text/csv")

    def test_a_credit_note_pdf_downloads_with_its_number(self, manager, finalized):
        pytest.importorskip("billing.documents")
        act(manager, "issue_credit_note", finalized, apply="yes", amount="5.00", reason="rounding")
        note = CreditNote.objects.get(invoice=finalized)

        pdf = manager.get(url("creditnote_pdf", note.pk))

        assert pdf["Content-Disposition"] == f'attachment; filename="{note.number}.pdf"'
        assert pdf.content.startswith(b"%PDF")

    def test_the_invoice_page_links_them(self, viewer, finalized):
        page = viewer.get(url("invoice_change", finalized.pk)).content.decode()

        assert url("invoice_pdf", finalized.pk) in page and url("invoice_csv", finalized.pk) in page

    def test_an_unknown_invoice_is_not_found(self, viewer):
        assert viewer.get(url("invoice_pdf", 987654321)).status_code == 404


@pytest.mark.django_db
class TestAuditLog:
    def test_nobody_adds_changes_or_deletes_entries_superusers_included(self, root, finalized):
        entry = AuditEntry.objects.get(action="invoice.finalize", object_id=str(finalized.pk))

        listing = root.get(url("auditentry_changelist"))
        detail = root.get(url("auditentry_change", entry.pk))
        refused = [root.get(url("auditentry_add")), root.post(url("auditentry_change", entry.pk), {"actor": "x"}),
                   root.post(url("auditentry_delete", entry.pk), {"post": "yes"})]

        assert listing.status_code == 200 and offered_actions(listing) == set()
        assert detail.status_code == 200 and "&quot;status&quot;: &quot;finalized&quot;" in detail.content.decode()
        assert [r.status_code for r in refused] == [403, 403, 403]
        entry.refresh_from_db()
        assert entry.actor == "user:setup"

    def test_the_invoice_page_links_its_audit_trail(self, viewer, finalized):
        trail = viewer.get(url("auditentry_changelist"), {"object_type__exact": "billing.Invoice",
                                                          "object_id": finalized.pk})

        assert [e.action for e in trail.context["cl"].result_list] == ["invoice.finalize"]


@pytest.mark.django_db
class TestBillingRuns:
    def test_a_manager_starts_a_run_through_the_service(self, manager):
        response = manager.post(url("billingrun_add"), {"period": "2026-10", "finalize": "on"}, follow=True)

        run = BillingRun.objects.get(requested_by="user:manager")
        assert (run.period, run.finalize, run.status) == (OCTOBER, True, BillingRun.Status.PENDING)
        assert response.redirect_chain[-1][0] == url("billingrun_change", run.pk)
        assert '<meta http-equiv="refresh" content="2">' in response.content.decode()

    def test_a_date_names_its_month(self, manager):
        manager.post(url("billingrun_add"), {"period": "2026-09-17"})

        assert BillingRun.objects.get(requested_by="user:manager").period == date(2026, 9, 1)

    def test_refuses_a_month_not_begun_and_finalizing_one_not_ended(self, manager):
        this_month = timezone.now().date().replace(day=1)
        next_month = date(this_month.year + this_month.month // 12, this_month.month % 12 + 1, 1)

        unbegun = manager.post(url("billingrun_add"), {"period": f"{next_month:%Y-%m}"})
        unended = manager.post(url("billingrun_add"), {"period": f"{this_month:%Y-%m}", "finalize": "on"})
        garbled = manager.post(url("billingrun_add"), {"period": "October"})

        assert "period" in unbegun.context["adminform"].form.errors
        assert "finalize" in unended.context["adminform"].form.errors
        assert "period" in garbled.context["adminform"].form.errors
        assert not BillingRun.objects.filter(requested_by="user:manager").exists()

    def test_the_list_shows_progress_and_the_page_is_read_only(self, manager):
        run = BillingRun.objects.create(period=OCTOBER, status=BillingRun.Status.RUNNING, customers_total=4,
                                        customers_done=3, requested_by="schedule", created_at=utc(2026, 11, 2))

        listing = manager.get(url("billingrun_changelist")).content.decode()
        changed = manager.post(url("billingrun_change", run.pk), {"period": "2026-09"})
        deleted = manager.post(url("billingrun_delete", run.pk), {"post": "yes"})

        assert '<progress max="4" value="3" title="75%"></progress> 3 / 4 (75%)' in listing
        assert (changed.status_code, deleted.status_code) == (403, 403)

    def test_a_finished_run_stops_reloading(self, manager):
        run = BillingRun.objects.create(period=OCTOBER, status=BillingRun.Status.DONE, customers_total=2,
                                        customers_done=2, requested_by="schedule", created_at=utc(2026, 11, 2),
                                        finished_at=utc(2026, 11, 2, 0, 5))

        page = manager.get(url("billingrun_change", run.pk)).content.decode()

        assert 'http-equiv="refresh"' not in page and "2 / 2 (100%)" in page


@pytest.mark.django_db
class TestWebhooks:
    def test_an_endpoint_secret_is_write_only(self, root):
        root.post(url("webhookendpoint_add"), {"url": "https://hooks.example.com/a", "events": ["invoice.paid"],
                                               "active": "on", "secret": "first-secret-value-1234"})
        endpoint = WebhookEndpoint.objects.get(url="https://hooks.example.com/a")

        page = root.get(url("webhookendpoint_change", endpoint.pk)).content.decode()
        root.post(url("webhookendpoint_change", endpoint.pk), {"url": endpoint.url, "events": ["invoice.paid",
                                                                                              "invoice.voided"],
                                                               "active": "on", "secret": ""})

        endpoint.refresh_from_db()
        assert "first-secret-value-1234" not in page and "••••••••1234" in page
        assert (endpoint.secret, endpoint.events) == ("first-secret-value-1234", ["invoice.paid", "invoice.voided"])

    def test_the_add_form_offers_a_random_secret(self, root):
        form = root.get(url("webhookendpoint_add")).context["adminform"].form

        assert len(form.initial["secret"]) >= 40

    def test_the_delivery_log_is_read_only(self, viewer, root, delivery):
        detail = viewer.get(url("webhookdelivery_change", delivery.pk)).content.decode()
        refused = [root.get(url("webhookdelivery_add")),
                   root.post(url("webhookdelivery_change", delivery.pk), {"status": "delivered"})]

        assert "INV-2026-000777" in detail and "HTTP 502" in detail
        assert [r.status_code for r in refused] == [403, 403]
