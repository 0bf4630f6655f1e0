"""Spend control in the admin: finance managers set budgets through `budget_put` (audited,
thresholds typed as a comma list), viewers only read, the spend alerts are read-only, and
the budget and customer lists show this month's live spend without a query per row."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import AuditEntry, Budget, SpendAlert
from billing.selectors import month_bounds
from billing.services.spend import budget_put, spends_forget, spends_refresh
from metering.models import Customer
from metering.services import utc_now
from tests.spend.conftest import usage

pytestmark = pytest.mark.django_db


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def spent(customer_id: str, *, input_millions: int, now: datetime) -> None:
    """gpt-5.4 input served a few minutes ago (2.50 a million at list prices), this month's
    live spend refreshed, as the consumer would."""
    served_at = max(now - timedelta(minutes=3), month_bounds(now)[0])
    usage({"customer_id": customer_id, "model": "gpt-5.4", "timestamp": served_at.isoformat(),
           "input_tokens": input_millions * 1_000_000, "cached_input_tokens": 0, "output_tokens": 0},
          arrived_at=now)
    spends_refresh(customer_ids=[customer_id], as_of=now)


def budget_form(customer: Customer, *, monthly_limit="100.00", thresholds="50, 80, 100", hard=True) -> dict:
    return {"customer": customer.pk, "monthly_limit": monthly_limit, "thresholds": thresholds,
            **({"hard": "on"} if hard else {})}


def put(customer_id: str, monthly_limit: str, *, thresholds=(50, 100), hard=False) -> Budget:
    return budget_put(customer_id=customer_id, monthly_limit=Decimal(monthly_limit), thresholds=list(thresholds),
                      hard=hard, actor="user:setup", as_of=utc_now())


class TestBudgetByManager:
    def test_adds_a_budget_through_the_service(self, manager, catalog):
        acme = catalog[0]

        response = manager.post(url("billing_budget_add"), budget_form(acme))

        assert response.status_code == 302, response.context["adminform"].form.errors
        budget = Budget.objects.get(customer=acme)
        assert (budget.monthly_limit, budget.thresholds, budget.hard) == (Decimal("100.00"), [50, 80, 100], True)
        assert budget.updated_by == "user:manager"
        entry = AuditEntry.objects.get(action="budget.put", object_id=str(budget.pk))
        assert entry.actor == "user:manager" and entry.before is None
        assert entry.after == {"monthly_limit": "100.00", "thresholds": [50, 80, 100], "hard": True}

    def test_changes_a_budget_through_the_service(self, manager, catalog):
        budget = put("acme", "100.00")

        page = manager.get(url("billing_budget_change", budget.pk))
        response = manager.post(url("billing_budget_change", budget.pk),
                                budget_form(catalog[0], monthly_limit="250.00", thresholds="25, 75", hard=False))

        assert 'value="50, 100"' in page.content.decode()  # the list shown as typed
        assert response.status_code == 302, response.context["adminform"].form.errors
        budget.refresh_from_db()
        assert (budget.monthly_limit, budget.thresholds, budget.hard) == (Decimal("250.00"), [25, 75], False)
        assert budget.updated_by == "user:manager"
        entry = AuditEntry.objects.get(action="budget.put", object_id=str(budget.pk), actor="user:manager")
        assert entry.before["monthly_limit"] == "100.00" and entry.after["monthly_limit"] == "250.00"

    @pytest.mark.parametrize(("thresholds", "message"), [
        ("80, 50", "distinct and ascending"),
        ("50, 50", "distinct and ascending"),
        ("0, 50", "from 1 to 1000"),
        ("50, 1001", "from 1 to 1000"),
        ("50; 80", "separated by commas"),
        ("fifty", "separated by commas"),
    ])
    def test_thresholds_are_checked_on_the_form(self, manager, catalog, thresholds, message):
        response = manager.post(url("billing_budget_add"), budget_form(catalog[0], thresholds=thresholds))

        assert response.status_code == 200
        assert message in str(response.context["adminform"].form.errors["thresholds"])
        assert not Budget.objects.filter(customer=catalog[0]).exists()

    def test_a_limit_must_be_above_zero(self, manager, catalog):
        response = manager.post(url("billing_budget_add"), budget_form(catalog[0], monthly_limit="0"))

        assert response.status_code == 200
        assert "above zero" in str(response.context["adminform"].form.errors["monthly_limit"])

    def test_deletes_a_budget_with_an_audit_entry(self, manager, catalog):
        budget = put("acme", "100.00")

        response = manager.post(url("billing_budget_delete", budget.pk), {"post": "yes"})

        assert response.status_code == 302
        assert not Budget.objects.filter(pk=budget.pk).exists()
        entry = AuditEntry.objects.get(action="budget.delete", object_id=str(budget.pk))
        assert entry.actor == "user:manager" and entry.after is None
        assert entry.before == {"monthly_limit": "100.00", "thresholds": [50, 100], "hard": False}


class TestBudgetByViewer:
    def test_reads_but_cannot_add_change_or_delete(self, viewer, catalog):
        budget = put("acme", "100.00")

        listed = viewer.get(url("billing_budget_changelist"))
        added = viewer.post(url("billing_budget_add"), budget_form(catalog[1]))
        changed = viewer.post(url("billing_budget_change", budget.pk),
                              budget_form(catalog[0], monthly_limit="1.00"))
        deleted = viewer.post(url("billing_budget_delete", budget.pk), {"post": "yes"})

        assert listed.status_code == 200
        assert (added.status_code, changed.status_code, deleted.status_code) == (403, 403, 403)
        budget.refresh_from_db()
        assert budget.monthly_limit == Decimal("100.00")
        assert not Budget.objects.filter(customer=catalog[1]).exists()


class TestLists:
    def test_budgets_show_this_months_spend_and_share_of_the_limit(self, viewer, list_prices):
        now = utc_now()
        put("acme", "40.00")
        put("globex", "10.00")
        Customer.objects.create(customer_id="initech", name="Initech")
        put("initech", "10.00")
        spent("acme", input_millions=4, now=now)  # 10.00
        spends_forget(customer_ids=["initech"], as_of=now)  # as after a repricing

        page = viewer.get(url("billing_budget_changelist")).content.decode()

        assert '<td class="field-spend">10.00</td><td class="field-percent">25.00%</td>' in page
        assert '<td class="field-spend">0.00</td><td class="field-percent">0.00%</td>' in page  # globex
        assert '<td class="field-spend">—</td><td class="field-percent">—</td>' in page  # initech: not computed
        assert '<td class="field-thresholds_text">50, 100</td>' in page

    def test_customers_show_this_months_spend_against_their_budget(self, viewer, list_prices):
        now = utc_now()
        put("acme", "40.00")
        spent("acme", input_millions=4, now=now)
        spent("globex", input_millions=2, now=now)
        Customer.objects.create(customer_id="initech", name="Initech")

        page = viewer.get(url("metering_customer_changelist")).content.decode()

        assert '<td class="field-balance">10.00 of 40.00</td>' in page
        assert '<td class="field-balance">5.00</td>' in page  # globex: no budget
        assert '<td class="field-balance">—</td>' in page  # initech: nothing computed

    def test_the_customer_list_costs_the_same_queries_for_more_customers(self, viewer, list_prices):
        now = utc_now()
        put("acme", "40.00")
        spent("acme", input_millions=1, now=now)
        few = self.queries(viewer)
        for customer_id in ("initech", "hooli", "umbrella"):
            Customer.objects.create(customer_id=customer_id, name=customer_id.title())
            put(customer_id, "40.00")
            spent(customer_id, input_millions=1, now=now)

        more = self.queries(viewer)

        assert more == few

    @staticmethod
    def queries(client) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url("metering_customer_changelist")).status_code == 200
        return len(captured)


class TestSpendAlerts:
    def test_are_listed_read_only(self, root, list_prices):
        now = utc_now()
        spent("acme", input_millions=4, now=now)
        put("acme", "15.00", thresholds=(50, 80, 100))  # 10.00 stands past 50%: announced at once
        alert = SpendAlert.objects.get(customer__customer_id="acme")

        listed = root.get(url("billing_spendalert_changelist"))
        filtered = root.get(url("billing_spendalert_changelist"), {"kind": SpendAlert.Kind.CREDIT})
        added = root.get(url("billing_spendalert_add"))
        changed = root.post(url("billing_spendalert_change", alert.pk), {"threshold": "1"})
        deleted = root.post(url("billing_spendalert_delete", alert.pk), {"post": "yes"})

        assert listed.status_code == 200 and alert.key in listed.content.decode()
        assert alert.key not in filtered.content.decode()
        assert (added.status_code, changed.status_code, deleted.status_code) == (403, 403, 403)
        alert.refresh_from_db()
        assert (alert.kind, alert.threshold) == (SpendAlert.Kind.THRESHOLD, 50)
