"""What the fuzzer found, one regression each: periods and instants bounded to the years
2000–2100 (and billing periods to the current month at most) as 422 problems, and inputs
that used to reach Postgres or date arithmetic unchecked (500s) refused as problems."""

from datetime import UTC, datetime

import pytest

from billing.models import BillingRun

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def this_month() -> str:
    return f"{datetime.now(UTC):%Y-%m}"


def next_month() -> str:
    now = datetime.now(UTC)
    return f"{now.year + now.month // 12}-{now.month % 12 + 1:02d}"


def assert_field_problem(response, field: str, status: int = 422) -> None:
    assert (response.status_code, response["Content-Type"]) == (status, PROBLEM), response.content[:300]
    assert field in response.json()["errors"]


class TestBillingPeriods:
    @pytest.mark.parametrize("period", ["0000-01", "0741-10", "1999-12", "2101-01", "2026-13", "26-10"])
    def test_a_billing_run_outside_the_years_is_a_422_and_starts_nothing(self, api_client_for, celery_queue_unread,
                                                                          period):
        response = api_client_for("admin").post("/api/v1/billing-runs", {"period": period}, format="json")

        assert_field_problem(response, "period")
        assert not BillingRun.objects.exists()

    def test_a_billing_run_of_a_future_period_is_a_422(self, api_client_for, celery_queue_unread):
        response = api_client_for("admin").post("/api/v1/billing-runs", {"period": next_month()}, format="json")

        assert_field_problem(response, "period")
        assert "current period" in response.json()["errors"]["period"][0]

    def test_the_current_period_and_2000_are_runs(self, api_client_for, celery_queue_unread):
        admin = api_client_for("admin")

        answers = [admin.post("/api/v1/billing-runs", {"period": p}, format="json") for p in (this_month(), "2000-01")]

        assert [(a.status_code, a.json()["period"]) for a in answers] == [(202, this_month()), (202, "2000-01")]

    @pytest.mark.parametrize("period", ["0000-01", "2026-1", next_month()])
    def test_the_invoice_list_takes_the_same_periods(self, api_client_for, period):
        response = api_client_for("admin").get("/api/v1/invoices", {"period": period})

        assert_field_problem(response, "period")


class TestInstants:
    @pytest.mark.parametrize("instant", ["1999-12-31T23:00:00Z", "0001-01-01T00:00:00Z", "2101-01-01T00:00:00Z"])
    def test_query_instants_outside_the_years_are_422(self, catalog, api_client_for, instant):
        admin = api_client_for("admin")

        usage = admin.get("/api/v1/usage", {"start": instant, "end": "2026-01-01T00:00:00Z"})
        focus = admin.get("/api/v1/exports/focus", {"start": "2026-01-01T00:00:00Z", "end": instant})
        alerts = admin.get("/api/v1/margin-alerts", {"start": instant})

        assert_field_problem(usage, "start")
        assert_field_problem(focus, "end")
        assert_field_problem(alerts, "start")

    def test_body_instants_outside_the_years_are_422(self, catalog, api_client_for):
        admin = api_client_for("admin")

        contract = admin.put("/api/v1/customers/acme/contract", {"effective_from": "0001-01-01T00:00:00Z"},
                             format="json")
        tier = admin.post("/api/v1/models/gpt-5.4/tier-changes", {"tier": "mini",
                                                                  "effective_from": "2101-01-01T00:00:00Z"},
                          format="json")

        assert_field_problem(contract, "effective_from")
        assert_field_problem(tier, "effective_from")

    def test_a_power_reading_hour_of_year_1_east_of_utc_is_a_422_not_an_overflow(self, api_client_for):
        reading = {"cluster": "any", "hour": "0001-01-01T00:00:00+05:00", "it_kwh": "1"}

        response = api_client_for("admin").post("/api/v1/power-readings", {"readings": [reading]}, format="json")

        assert (response.status_code, response["Content-Type"]) == (422, PROBLEM)
        assert "2000–2100" in response.json()["rejected"][0]["errors"]["hour"][0]


class TestInputsThatReachedPostgres:
    def test_a_nul_in_a_list_filter_is_a_422(self, catalog, api_client_for):
        admin = api_client_for("admin")

        dead_letters = admin.get("/api/v1/dead-letters", {"customer_id": "\x00"})
        skus = admin.get("/api/v1/hardware-skus", {"vendor": "NV\x00IDIA"})

        assert_field_problem(dead_letters, "customer_id")
        assert_field_problem(skus, "vendor")

    def test_a_tier_change_of_an_unknown_model_is_404(self, catalog, api_client_for):
        body = {"tier": "mini", "effective_from": "2026-11-01T00:00:00Z"}

        unknown = api_client_for("admin").post("/api/v1/models/gpt-9/tier-changes", body, format="json")
        nul = api_client_for("admin").post("/api/v1/models/gpt%00/tier-changes", body, format="json")

        assert [(r.status_code, r["Content-Type"]) for r in (unknown, nul)] == [(404, PROBLEM), (404, PROBLEM)]

    def test_a_path_no_route_matches_is_a_404_problem_under_the_api_only(self, client, api_client_for):
        api = api_client_for("admin").get("/api/v1/invoices/abc")
        page = client.get("/not-an-api-path")

        assert (api.status_code, api["Content-Type"], api.json()["status"]) == (404, PROBLEM, 404)
        assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
