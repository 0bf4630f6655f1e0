"""Price books, contracts, credits, upcoming invoices and usage amounts over REST."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from billing.models import CreditEntry, Price, PriceBook
from billing.selectors import month_bounds
from metering.models import HourlyRollup

pytestmark = pytest.mark.django_db

LIST = {"frontier": ("2.50", "0.25", "15.00"), "mini": ("0.75", "0.075", "4.50"), "nano": ("0.20", "0.02", "1.25")}
SERVICE_FACTOR = {"standard": Decimal(1), "batch": Decimal("0.5"), "priority": Decimal(2)}


def list_prices(factor: Decimal = Decimal(1)) -> list[dict]:
    return [
        {"model_tier": tier, "service_tier": service, "token_class": cls,
         "unit_price": str(Decimal(price) * SERVICE_FACTOR[service] * factor)}
        for tier, prices in LIST.items() for service in SERVICE_FACTOR
        for cls, price in zip(("input", "cached_input", "output"), prices)
    ]


@pytest.fixture
def admin(api_client_for):
    return api_client_for("admin")


@pytest.fixture
def book(catalog, admin):
    response = admin.post("/api/v1/price-books", {"effective_from": "2026-01-01T00:00:00Z", "prices": list_prices()},
                          format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def rollup(customer_id: str, model: str, hour: datetime, *, input_tokens: int, cached: int = 0, output: int = 0,
           service_tier: str = "standard") -> None:
    HourlyRollup.objects.create(customer_id=customer_id, model=model, service_tier=service_tier, region="",
                                cluster="", hour=hour, events=1, input_tokens=input_tokens,
                                cached_input_tokens=cached, output_tokens=output)


class TestPriceBooks:
    def test_a_posted_book_is_published_with_its_prices(self, book, admin):
        listed = admin.get("/api/v1/price-books").json()["results"]

        assert book["status"] == "published" and book["published_by"].startswith("api-key:")
        assert len(listed[0]["prices"]) == 27
        frontier_input = next(p for p in listed[0]["prices"] if p["model_tier"] == "frontier"
                              and p["service_tier"] == "standard" and p["token_class"] == "input")
        assert frontier_input["unit_price"] == "2.50"
        assert {p["unit_price"] for p in listed[0]["prices"] if p["model_tier"] == "mini"} >= {"0.075", "0.0375"}

    def test_published_prices_are_immutable_in_the_database(self, book):
        statements = [
            "UPDATE billing_price SET unit_price = 0",
            "DELETE FROM billing_price",
            "UPDATE billing_pricebook SET note = 'x'",
            "DELETE FROM billing_pricebook",
            f"INSERT INTO billing_price (price_book_id, model_tier, service_tier, token_class, unit_price) "
            f"VALUES ({book['id']}, 'frontier', 'flex', 'input', 1)",
        ]
        for statement in statements:
            with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(statement)

        assert Price.objects.filter(price_book_id=book["id"]).count() == 27

    @pytest.mark.parametrize(("change", "field"), [
        ({"unit_price": "-1.00"}, "prices[0].unit_price"),  # a nested field is named by its path
        ({"unit_price": "1.1234567"}, "prices[0].unit_price"),
        ({"model_tier": "ultra"}, "prices[0].model_tier"),
        ({"token_class": "reasoning"}, "prices[0].token_class"),
        ({"service_tier": "premium"}, "prices[0].service_tier"),  # not a tier of the catalog
    ])
    def test_bad_prices_are_field_errors(self, catalog, admin, change, field):
        prices = list_prices()
        prices[0] = {**prices[0], **change}

        response = admin.post("/api/v1/price-books", {"effective_from": "2026-01-01T00:00:00Z", "prices": prices},
                              format="json")

        assert response.status_code == 422
        assert list(response.json()["errors"]) == [field]

    def test_duplicate_keys_off_hour_starts_and_same_instant_versions_are_refused(self, book, admin):
        doubled = admin.post("/api/v1/price-books", {"effective_from": "2026-02-01T00:00:00Z",
                                                      "prices": list_prices() + list_prices()[:1]}, format="json")
        off_hour = admin.post("/api/v1/price-books", {"effective_from": "2026-02-01T00:30:00Z",
                                                       "prices": list_prices()}, format="json")
        same_instant = admin.post("/api/v1/price-books", {"effective_from": "2026-01-01T00:00:00Z",
                                                           "prices": list_prices()}, format="json")

        assert doubled.status_code == 422 and "prices" in doubled.json()["errors"]
        assert off_hour.status_code == 422 and "effective_from" in off_hour.json()["errors"]
        assert same_instant.status_code == 409
        assert PriceBook.objects.count() == 1

    def test_a_book_leaving_used_keys_unpriced_is_refused_at_publish(self, book, admin):
        rollup("acme", "gpt-5.4-nano", datetime(2026, 3, 2, 10, tzinfo=UTC), input_tokens=100, output=5,
               service_tier="priority")
        partial = [p for p in list_prices() if not (p["model_tier"] == "nano" and p["service_tier"] == "priority"
                                                    and p["token_class"] == "output")]

        response = admin.post("/api/v1/price-books", {"effective_from": "2026-03-01T00:00:00Z", "prices": partial},
                              format="json")

        assert response.status_code == 422
        assert response.json()["errors"]["prices"] == ["nano/priority/output"]
        assert PriceBook.objects.count() == 1

    def test_newer_classes_and_service_tiers_left_unpriced_are_reported_like_input_and_output(self, book, admin):
        HourlyRollup.objects.create(customer_id="acme", model="gpt-5.4", service_tier="flex", region="", cluster="",
                                    hour=datetime(2026, 3, 2, 10, tzinfo=UTC), events=1, input_tokens=1_000,
                                    cached_input_tokens=100, cache_write_tokens=200, cache_write_long_tokens=300,
                                    output_tokens=50, audio_output_tokens=50, reasoning_tokens=20)
        HourlyRollup.objects.create(customer_id="acme", model="gpt-5.4-mini", service_tier="standard", region="",
                                    cluster="", hour=datetime(2026, 3, 2, 10, tzinfo=UTC), events=1,
                                    input_tokens=1_000, cached_input_tokens=0, audio_input_tokens=1_000,
                                    output_tokens=0)

        response = admin.post("/api/v1/price-books", {"effective_from": "2026-03-01T00:00:00Z",
                                                       "prices": list_prices()}, format="json")

        # The flex output is all audio, so no text output price is wanted; reasoning is never priced apart.
        assert response.status_code == 422
        assert response.json()["errors"]["prices"] == [
            "frontier/flex/audio_output", "frontier/flex/cache_write", "frontier/flex/cache_write_long",
            "frontier/flex/cached_input", "frontier/flex/input", "mini/standard/audio_input"]

    def test_only_admin_keys_manage_prices(self, catalog, api_client_for):
        assert api_client_for("customer", "acme").get("/api/v1/price-books").status_code == 403
        assert api_client_for("ingest").post("/api/v1/price-books", {}, format="json").status_code == 403


class TestContracts:
    def test_put_creates_versions_and_closes_the_open_one(self, book, admin):
        first = admin.put("/api/v1/customers/acme/contract", {
            "effective_from": "2026-01-01T00:00:00Z", "discount_percent": "10.00", "monthly_minimum": "500.00",
            "unit_price_overrides": [{"model_tier": "nano", "service_tier": "standard", "token_class": "input",
                                      "unit_price": "0.15"}],
        }, format="json")
        second = admin.put("/api/v1/customers/acme/contract", {
            "effective_from": "2026-06-01T00:00:00Z",
            "volume_tiers": [{"model_tier": "frontier", "service_tier": "standard", "token_class": "output",
                              "bands": [{"up_to": 1_000_000_000, "unit_price": "15.00"},
                                        {"up_to": None, "unit_price": "12.00"}]}],
        }, format="json")
        current = admin.get("/api/v1/customers/acme/contract").json()

        assert first.status_code == 200 and first.json()["unit_price_overrides"][0]["unit_price"] == "0.15"
        assert second.status_code == 200
        assert current["effective_from"].startswith("2026-06-01")
        assert current["volume_tiers"][0]["bands"][1] == {"up_to": None, "unit_price": "12.00"}

    @pytest.mark.parametrize(("body", "status", "field"), [
        ({"effective_from": "2026-01-01T00:00:00Z", "discount_percent": "120"}, 422, "discount_percent"),
        ({"effective_from": "2026-01-01T00:00:00Z", "monthly_minimum": "-5"}, 422, "monthly_minimum"),
        ({"effective_from": "2026-01-01T00:00:00Z", "effective_to": "2025-01-01T00:00:00Z"}, 422, "effective_to"),
        ({"effective_from": "2026-01-01T00:00:00Z", "volume_tiers": [
            {"model_tier": "frontier", "service_tier": "standard", "token_class": "output",
             "bands": [{"up_to": 100, "unit_price": "1"}]}]}, 422, "volume_tiers[0].bands"),
        ({"discount_percent": "5"}, 422, "effective_from"),
    ])
    def test_bad_contracts_are_field_errors(self, book, admin, body, status, field):
        response = admin.put("/api/v1/customers/acme/contract", body, format="json")

        assert response.status_code == status
        assert list(response.json()["errors"]) == [field]

    def test_overlapping_versions_conflict_and_unknown_customers_are_404(self, book, admin):
        admin.put("/api/v1/customers/acme/contract", {"effective_from": "2026-05-01T00:00:00Z",
                                                       "effective_to": "2026-08-01T00:00:00Z"}, format="json")

        overlap = admin.put("/api/v1/customers/acme/contract", {"effective_from": "2026-04-01T00:00:00Z",
                                                                 "effective_to": "2026-06-01T00:00:00Z"}, format="json")
        unknown = admin.put("/api/v1/customers/initech/contract", {"effective_from": "2026-04-01T00:00:00Z"},
                            format="json")

        assert overlap.status_code == 409 and overlap.json()["errors"]["effective_from"]
        assert unknown.status_code == 404


class TestCreditsAndUpcomingInvoice:
    def test_credits_are_granted_listed_with_a_balance_and_append_only(self, book, admin):
        granted = admin.post("/api/v1/customers/acme/credits", {"amount": "100.00", "reason": "launch promo"},
                             format="json")
        refused = admin.post("/api/v1/customers/acme/credits", {"amount": "-5.00", "reason": "x"}, format="json")
        listed = admin.get("/api/v1/customers/acme/credits").json()

        assert granted.status_code == 201 and granted.json()["created_by"].startswith("api-key:")
        assert refused.status_code == 422
        assert listed["balance"] == "100.00" and listed["results"][0]["reason"] == "launch promo"
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            CreditEntry.objects.update(amount=1)

    def test_upcoming_invoice_matches_a_hand_computation(self, book, admin):
        start, _ = month_bounds(datetime.now(UTC))
        admin.put("/api/v1/customers/acme/contract", {"effective_from": "2026-01-01T00:00:00Z",
                                                       "discount_percent": "10.00", "monthly_minimum": "50.00"},
                  format="json")
        admin.post("/api/v1/customers/acme/credits", {"amount": "5.00", "reason": "goodwill"}, format="json")
        rollup("acme", "gpt-5.4", start, input_tokens=3_000_000, cached=1_000_000, output=500_000)
        rollup("acme", "gpt-5.4", start + timedelta(hours=5), input_tokens=1_000_001, output=1)
        rollup("acme", "gpt-5.4-nano", start, input_tokens=1_234_567, output=0, service_tier="batch")

        invoice = admin.get("/api/v1/customers/acme/upcoming-invoice").json()

        # input 3,000,001 × 2.50 = 7.5000025 → 7.50; cached 1,000,000 × 0.25 = 0.25; output 500,001 × 15 = 7.500015
        # → 7.50; nano batch input 1,234,567 × 0.10 = 0.1234567 → 0.12. Usage 15.37; discount −1.54 (15.37 × 10% =
        # 1.537); after discount 13.83 < 50.00 → true-up 36.17; credits −5.00; total 45.00.
        amounts = [(line["kind"], line["amount"]) for line in invoice["lines"]]
        assert amounts == [("usage", "7.50"), ("usage", "0.25"), ("usage", "7.50"), ("usage", "0.12"),
                           ("discount", "-1.54"), ("minimum", "36.17"), ("credits", "-5.00")]
        assert (invoice["subtotal"], invoice["credits_applied"], invoice["total"]) == ("50.00", "5.00", "45.00")
        assert invoice["lines"][0]["tokens"] == 3_000_001 and invoice["lines"][0]["unit_price"] == "2.50"

    def test_tenant_isolation_on_upcoming_invoice_contract_and_credits(self, book, api_client_for):
        acme = api_client_for("customer", "acme")

        assert acme.get("/api/v1/customers/acme/upcoming-invoice").status_code == 200
        assert acme.get("/api/v1/customers/globex/upcoming-invoice").status_code == 404
        assert acme.get("/api/v1/customers/globex/credits").status_code == 404
        assert acme.get("/api/v1/customers/acme/contract").status_code == 403
        assert acme.post("/api/v1/customers/acme/credits", {"amount": "1.00", "reason": "x"},
                         format="json").status_code == 403


class TestUsageAmounts:
    def test_amount_uses_the_price_in_force_at_each_hour_before_discounts(self, book, admin):
        admin.put("/api/v1/customers/acme/contract", {"effective_from": "2026-01-01T00:00:00Z",
                                                       "discount_percent": "50.00"}, format="json")
        admin.post("/api/v1/price-books", {"effective_from": "2026-04-15T00:00:00Z",
                                            "prices": list_prices(Decimal(2))}, format="json")
        rollup("acme", "gpt-5.4", datetime(2026, 4, 14, 23, tzinfo=UTC), input_tokens=1_000_000)
        rollup("acme", "gpt-5.4", datetime(2026, 4, 15, 0, tzinfo=UTC), input_tokens=1_000_000)

        rows = admin.get("/api/v1/usage", {"customer_id": "acme", "start": "2026-04-01T00:00:00Z",
                                            "end": "2026-05-01T00:00:00Z", "group_by": "day"}).json()["results"]

        assert [(r["day"][:10], r["amount"]) for r in rows] == [("2026-04-14", "2.50"), ("2026-04-15", "5.00")]

    def test_a_model_moved_to_another_tier_is_priced_by_its_tier_at_the_hour(self, book, admin):
        admin.post("/api/v1/models/gpt-5.4/tier-changes", {"tier": "mini", "effective_from": "2026-04-15T00:00:00Z"},
                   format="json")
        rollup("acme", "gpt-5.4", datetime(2026, 4, 14, 23, tzinfo=UTC), input_tokens=1_000_000)
        rollup("acme", "gpt-5.4", datetime(2026, 4, 15, 1, tzinfo=UTC), input_tokens=1_000_000)

        rows = admin.get("/api/v1/usage", {"customer_id": "acme", "start": "2026-04-01T00:00:00Z",
                                            "end": "2026-05-01T00:00:00Z", "group_by": "model_tier"}).json()["results"]

        assert [(r["model_tier"], r["amount"]) for r in rows] == [("frontier", "2.50"), ("mini", "0.75")]
