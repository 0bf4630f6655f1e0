"""GET /customers/{id}/balance and GET|PUT /customers/{id}/budget over REST: who may read
what, the answers' shape, the errors."""

from decimal import Decimal

import pytest

from billing.models import AuditEntry, Budget
from metering.services import utc_now
from tests.spend.conftest import usage

pytestmark = pytest.mark.django_db


def spend_some(customer_id: str = "acme") -> None:
    """4.00 at list prices, served a few minutes ago."""
    usage({"customer_id": customer_id, "model": "gpt-5.4", "service_tier": "standard", "input_tokens": 1_000_000,
           "cached_input_tokens": 0, "output_tokens": 100_000}, arrived_at=utc_now())


class TestBalanceScopes:
    def test_a_customer_key_reads_its_own_and_no_other(self, list_prices, api_client_for):
        spend_some()
        acme = api_client_for("customer", "acme")

        own = acme.get("/api/v1/customers/acme/balance")
        other = acme.get("/api/v1/customers/globex/balance")

        assert own.status_code == 200 and own.json()["spend"] == "4.00"
        assert other.status_code == 404 and other["Content-Type"] == "application/problem+json"

    @pytest.mark.parametrize("scope", ["ingest", "admin"])
    def test_ingest_and_admin_keys_read_any(self, list_prices, api_client_for, scope):
        spend_some("globex")

        answer = api_client_for(scope).get("/api/v1/customers/globex/balance").json()

        assert set(answer) == {"customer_id", "period", "spend", "credit_remaining", "budget", "budget_remaining",
                               "allowed", "as_of", "lag_ms", "unpriced"}
        assert (answer["spend"], answer["budget"], answer["allowed"], answer["period"]) == (
            "4.00", None, True, f"{utc_now():%Y-%m}")

    def test_unknown_customer_and_no_key(self, list_prices, api_client_for, client):
        assert api_client_for("ingest").get("/api/v1/customers/nobody/balance").status_code == 404
        assert client.get("/api/v1/customers/acme/balance").status_code == 401


class TestBudgetApi:
    def test_put_then_get_and_the_balance_follows(self, list_prices, api_client_for):
        spend_some()
        admin = api_client_for("admin")
        assert admin.get("/api/v1/customers/acme/budget").status_code == 404

        put = admin.put("/api/v1/customers/acme/budget", {"monthly_limit": "4.00", "thresholds": [50, 100],
                                                          "hard": True}, format="json")

        assert put.status_code == 200 and put.json() == {"monthly_limit": "4.00", "thresholds": [50, 100], "hard": True}
        assert admin.get("/api/v1/customers/acme/budget").json() == put.json()
        balance = admin.get("/api/v1/customers/acme/balance").json()
        assert (balance["budget"], balance["budget_remaining"], balance["allowed"]) == ("4.00", "0.00", False)
        assert AuditEntry.objects.filter(action="budget.put").count() == 1
        assert AuditEntry.objects.filter(action="budget.threshold_crossed").count() == 2  # already past both

    @pytest.mark.parametrize("body, field", [
        ({"monthly_limit": "0.00", "thresholds": [50]}, "monthly_limit"),
        ({"monthly_limit": "10.00", "thresholds": [80, 50]}, "thresholds"),
        ({"monthly_limit": "10.00", "thresholds": [50, 50]}, "thresholds"),
        ({"monthly_limit": "10.00", "thresholds": [0]}, "thresholds"),
        ({"monthly_limit": "ten"}, "monthly_limit"),
    ])
    def test_bad_budgets_are_refused_with_the_field(self, catalog, api_client_for, body, field):
        answer = api_client_for("admin").put("/api/v1/customers/acme/budget", body, format="json")

        assert answer.status_code == 422 and any(key.startswith(field) for key in answer.json()["errors"])
        assert not Budget.objects.exists()

    def test_a_customer_sets_its_own_budget_only(self, catalog, api_client_for):
        acme = api_client_for("customer", "acme")
        body = {"monthly_limit": "100.00", "thresholds": [80], "hard": False}

        assert acme.put("/api/v1/customers/acme/budget", body, format="json").status_code == 200
        assert acme.put("/api/v1/customers/globex/budget", body, format="json").status_code == 404
        assert Budget.objects.get().monthly_limit == Decimal("100.00")
