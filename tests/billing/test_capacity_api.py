"""Reservations and rentals over REST (API.md: Customers): admin writes, a customer key reads
its own and gets 404 for anyone else's, overlaps and invoiced periods are 409, rules 422."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Rental, Reservation
from billing.selectors import month_bounds

pytestmark = pytest.mark.django_db

RESERVATION = {"model_tier": "frontier", "units": 10, "unit_hour_price": "12.50",
               "starts_at": "2026-10-17T13:00:00Z", "ends_at": None}
RENTAL = {"cluster": "iad-h100-a", "accelerator_hour_price": "4.00", "starts_at": "2026-10-01T00:00:00Z",
          "ends_at": "2026-10-11T00:00:00Z"}


@pytest.fixture
def admin(api_client_for):
    return api_client_for("admin")


class TestReservations:
    def test_admin_posts_a_version_and_lists_them(self, admin, fleet):
        created = admin.post("/api/v1/customers/acme/reservations", RESERVATION, format="json")
        listed = admin.get("/api/v1/customers/acme/reservations")

        assert created.status_code == 201, created.json()
        body = created.json()
        assert {k: body[k] for k in ("customer_id", "model_tier", "units", "unit_hour_price", "starts_at", "ends_at",
                                     "cluster")} == {
            "customer_id": "acme", "model_tier": "frontier", "units": 10, "unit_hour_price": "12.50",
            "starts_at": "2026-10-17T13:00:00+00:00", "ends_at": None, "cluster": None}
        assert listed.status_code == 200
        assert listed.json()["next"] is None and [r["id"] for r in listed.json()["results"]] == [body["id"]]

    def test_off_the_hour_and_unknown_tiers_are_refused(self, admin, fleet):
        off = admin.post("/api/v1/customers/acme/reservations", {**RESERVATION, "starts_at": "2026-10-17T13:30:00Z"},
                         format="json")
        tier = admin.post("/api/v1/customers/acme/reservations", {**RESERVATION, "model_tier": "huge"}, format="json")

        assert off.status_code in (400, 422) and "starts_at" in off.json()["errors"]
        assert tier.status_code in (400, 422) and "model_tier" in tier.json()["errors"]
        assert not Reservation.objects.exists()

    def test_a_cluster_out_of_service_over_the_term_is_422(self, admin, fleet):
        response = admin.post("/api/v1/customers/acme/reservations", {**RESERVATION, "cluster": "retired"},
                              format="json")

        assert response.status_code == 422
        assert response["Content-Type"].startswith("application/problem+json")
        assert "cluster" in response.json()["errors"]

    def test_an_overlapping_version_is_409(self, admin, fleet):
        admin.post("/api/v1/customers/acme/reservations", {**RESERVATION, "ends_at": "2026-10-20T00:00:00Z"},
                   format="json")

        response = admin.post("/api/v1/customers/acme/reservations",
                              {**RESERVATION, "starts_at": "2026-10-01T00:00:00Z", "ends_at": "2026-10-18T00:00:00Z"},
                              format="json")

        assert response.status_code == 409
        assert Reservation.objects.count() == 1

    def test_a_customer_key_reads_its_own_only_and_never_writes(self, admin, api_client_for, fleet):
        admin.post("/api/v1/customers/acme/reservations", RESERVATION, format="json")
        admin.post("/api/v1/customers/globex/reservations", RESERVATION, format="json")
        acme = api_client_for("customer", "acme")

        own = acme.get("/api/v1/customers/acme/reservations")
        other = acme.get("/api/v1/customers/globex/reservations")
        missing = acme.get("/api/v1/customers/nobody/reservations")
        write = acme.post("/api/v1/customers/acme/reservations", RESERVATION, format="json")

        assert own.status_code == 200 and [r["customer_id"] for r in own.json()["results"]] == ["acme"]
        assert other.status_code == 404 and missing.status_code == 404
        assert other.json()["detail"] == missing.json()["detail"]
        assert write.status_code == 403
        assert Reservation.objects.filter(customer__customer_id="acme").count() == 1


class TestRentals:
    def test_overlapping_rentals_of_a_cluster_are_409(self, admin, fleet):
        first = admin.post("/api/v1/customers/globex/rentals", RENTAL, format="json")

        second = admin.post("/api/v1/customers/acme/rentals",
                            {**RENTAL, "starts_at": "2026-10-10T00:00:00Z", "ends_at": None}, format="json")

        assert first.status_code == 201, first.json()
        assert first.json()["accelerator_count"] == 8 and first.json()["accelerator_hour_price"] == "4.00"
        assert second.status_code == 409
        assert second["Content-Type"].startswith("application/problem+json")
        assert list(Rental.objects.values_list("customer__customer_id", flat=True)) == ["globex"]

    def test_an_unknown_cluster_is_refused(self, admin, fleet):
        response = admin.post("/api/v1/customers/globex/rentals", {**RENTAL, "cluster": "nowhere"}, format="json")

        assert response.status_code in (400, 422) and "cluster" in response.json()["errors"]

    def test_a_customer_key_reads_its_own_only(self, admin, api_client_for, fleet):
        admin.post("/api/v1/customers/globex/rentals", RENTAL, format="json")
        globex, acme = api_client_for("customer", "globex"), api_client_for("customer", "acme")

        own = globex.get("/api/v1/customers/globex/rentals")
        other = acme.get("/api/v1/customers/globex/rentals")

        assert own.status_code == 200 and [r["cluster"] for r in own.json()["results"]] == ["iad-h100-a"]
        assert other.status_code == 404

    def test_the_upcoming_invoice_shows_the_rental(self, admin, api_client_for, list_prices, fleet):
        start, _ = month_bounds(datetime.now(UTC))
        admin.post("/api/v1/customers/globex/rentals", {**RENTAL, "starts_at": start.isoformat(),
                                                        "ends_at": (start + timedelta(days=1)).isoformat()},
                   format="json")

        response = api_client_for("customer", "globex").get("/api/v1/customers/globex/upcoming-invoice")

        assert response.status_code == 200
        [line] = response.json()["lines"]
        assert line["kind"] == "capacity" and line["amount"] == f"{Decimal(8 * 24 * 4):.2f}"
        assert line["unit_price"] == "4.00" and response.json()["total"] == "768.00"
