"""The live balance equals a full rating of the period, whatever changes what it rates:
usage, a price book published after the usage, contracts with graduated bands, a rental
that covers usage, a reservation, an adjustment, credits, budgets."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import Spend
from billing.services.capacity import rental_create, reservation_put
from billing.services.contracts import contract_put
from billing.services.credits import credit_grant
from billing.services.price_books import price_book_create
from billing.services.spend import balance_read, budget_put, spends_refresh
from metering.adjustment_rules import adjustment_validate
from metering.adjustments import adjustment_apply, rest_source
from metering.models import UsageSegment
from metering.projections import segment_differences
from metering.services import catalog_model_create
from metering.selectors import catalog_current
from scripts.demo_pricing import price_list
from tests.conftest import utc
from tests.spend.conftest import preview_spend, usage

AS_OF = utc(2026, 11, 20, 12)


def balance(customer_id: str = "acme"):
    return balance_read(customer_id=customer_id, as_of=AS_OF)


def served(event_id: str, when: str, *, customer_id: str = "acme", model: str = "gpt-5.4", **tokens) -> dict:
    return {"event_id": event_id, "customer_id": customer_id, "model": model, "timestamp": when,
            "input_tokens": tokens.pop("input_tokens", 1_000_000), "output_tokens": tokens.pop("output_tokens", 100_000),
            "cached_input_tokens": tokens.pop("cached_input_tokens", 0), **tokens}


@pytest.mark.django_db
class TestBalanceEqualsTheRating:
    def test_list_prices_by_hand(self, list_prices):
        usage(served("a1", "2026-11-03T10:05:00Z"), arrived_at=AS_OF)

        # frontier standard: 1,000,000 input × 2.50 + 100,000 output × 15.00 per million
        assert balance().spend == Decimal("4.00") == preview_spend("acme", AS_OF)

    def test_a_price_book_published_after_the_usage_splits_its_stretch(self, list_prices):
        usage(served("a1", "2026-11-03T10:05:00Z"), served("a2", "2026-11-12T10:05:00Z"), arrived_at=AS_OF)
        assert balance().spend == Decimal("8.00")

        price_book_create(effective_from=utc(2026, 11, 10, 7, 30), currency="USD", actor="t", as_of=AS_OF,
                          prices=price_list(change=("frontier", "output", "5.00")))

        # the usage of Nov 12 now pays 5.00 for output: 2.50 + 0.50
        assert UsageSegment.objects.filter(customer_id="acme").count() == 2
        assert balance().spend == Decimal("7.00") == preview_spend("acme", AS_OF)
        assert segment_differences(start=None, end=None) == []

    def test_contract_discount_overrides_and_graduated_bands(self, list_prices):
        catalog_model_create(name="gpt-5.4-2", tier="frontier")  # two models share the frontier bands
        usage(served("a1", "2026-11-03T10:05:00Z", input_tokens=3_000_000),
              served("a2", "2026-11-04T10:05:00Z", model="gpt-5.4-mini", input_tokens=2_000_000),
              served("a3", "2026-11-05T10:05:00Z", model="gpt-5.4-2", input_tokens=1_500_000), arrived_at=AS_OF)
        before = balance().spend
        contract_put(customer_id="acme", effective_from=utc(2026, 11, 1), effective_to=None,
                     discount_percent=Decimal("12.50"), monthly_minimum=Decimal("5000.00"),
                     unit_price_overrides=[{"model_tier": "mini", "service_tier": "standard", "token_class": "input",
                                            "unit_price": Decimal("0.333333")}],
                     volume_tiers=[{"model_tier": "frontier", "service_tier": "standard", "token_class": "input",
                                    "bands": [{"up_to": 2_000_000, "unit_price": Decimal("2.50")},
                                              {"up_to": None, "unit_price": Decimal("1.10")}]}],
                     actor="t")

        after = balance().spend
        assert after != before and after == preview_spend("acme", AS_OF)  # the minimum is not spend

    def test_a_rental_leaves_out_the_usage_it_covers_and_adds_its_line(self, list_prices, fleet):
        usage(served("a1", "2026-11-03T10:05:00Z", cluster="iad-h100-a"),
              served("a2", "2026-11-06T10:05:00Z", cluster="iad-h100-a"),
              served("a3", "2026-11-06T11:05:00Z", cluster="iad-h100-b"), arrived_at=AS_OF)
        assert balance().spend == Decimal("12.00")

        rental_create(customer_id="acme", cluster="iad-h100-a", accelerator_hour_price=Decimal("1.00"),
                      starts_at=utc(2026, 11, 5), ends_at=utc(2026, 11, 6, 12), actor="t", as_of=AS_OF)

        # a2 is covered; 8 accelerators × 36 h × 1.00 is the rental's line
        assert balance().spend == Decimal("8.00") + Decimal("288.00") == preview_spend("acme", AS_OF)

    def test_a_reservation_counts_its_whole_line_for_the_period(self, list_prices):
        reservation_put(customer_id="acme", model_tier="frontier", units=2, unit_hour_price=Decimal("0.40"),
                        starts_at=utc(2026, 11, 16), ends_at=None, cluster=None, actor="t", as_of=AS_OF)

        assert balance().spend == Decimal("2") * 15 * 24 * Decimal("0.40") == preview_spend("acme", AS_OF)

    def test_an_adjustment_over_rest_is_in_the_balance_at_once(self, list_prices):
        usage(served("a1", "2026-11-03T10:05:00Z"), served("a2", "2026-11-04T10:05:00Z"), arrived_at=AS_OF)
        assert balance().spend == Decimal("8.00")
        verdict = adjustment_validate({"action": "void", "customer_id": "acme", "event_id": "a2",
                                       "adjustment_id": "adj-1", "reason": "test traffic"}, catalog=catalog_current())

        adjustment_apply(adjustment=verdict, source=rest_source(), actor="t", as_of=AS_OF)
        spends_refresh(customer_ids=["acme"], as_of=AS_OF)

        assert balance().spend == Decimal("4.00") == preview_spend("acme", AS_OF)

    def test_unpriced_usage_is_left_out_and_said(self, catalog):
        price_book_create(effective_from=utc(2026, 1, 1), currency="USD", actor="t", as_of=AS_OF,
                          prices=[p for p in price_list() if p["model_tier"] != "nano"])
        usage(served("a1", "2026-11-03T10:05:00Z"), served("a2", "2026-11-03T10:06:00Z", model="gpt-5.4-nano"),
              arrived_at=AS_OF)

        assert (balance().spend, balance().unpriced) == (Decimal("4.00"), True)


@pytest.mark.django_db
class TestCreditsAndBudgets:
    def test_credit_remaining_never_goes_below_zero(self, list_prices):
        usage(served("a1", "2026-11-03T10:05:00Z"), arrived_at=AS_OF)
        assert balance().credit_remaining == 0
        credit_grant(customer_id="acme", amount=Decimal("10.00"), reason="prepaid", actor="t", as_of=AS_OF)
        assert balance().credit_remaining == Decimal("6.00")
        usage(served("a2", "2026-11-04T10:05:00Z"), served("a3", "2026-11-05T10:05:00Z"), arrived_at=AS_OF)
        spends_refresh(customer_ids=["acme"], as_of=AS_OF)
        assert balance().credit_remaining == 0 and balance().spend == Decimal("12.00")

    @pytest.mark.parametrize("hard, allowed", [(True, False), (False, True)])
    def test_a_hard_budget_refuses_at_its_limit_a_soft_one_does_not(self, list_prices, hard, allowed):
        budget_put(customer_id="acme", monthly_limit=Decimal("8.00"), thresholds=[50, 100], hard=hard, actor="t",
                   as_of=AS_OF)
        usage(served("a1", "2026-11-03T10:05:00Z"), arrived_at=AS_OF)
        spends_refresh(customer_ids=["acme"], as_of=AS_OF)
        assert (balance().allowed, balance().budget_remaining) == (True, Decimal("4.00"))

        usage(served("a2", "2026-11-04T10:05:00Z"), arrived_at=AS_OF)
        spends_refresh(customer_ids=["acme"], as_of=AS_OF)

        assert (balance().allowed, balance().budget_remaining, balance().budget) == (allowed, 0, Decimal("8.00"))

    def test_a_missing_spend_row_is_computed_on_read(self, list_prices):
        usage(served("a1", "2026-11-03T10:05:00Z"), arrived_at=AS_OF)
        Spend.objects.all().delete()

        assert balance().spend == Decimal("4.00") and Spend.objects.filter(customer__customer_id="acme").count() == 1

    def test_the_next_period_starts_from_its_own_usage(self, list_prices):
        usage(served("a1", "2026-11-03T10:05:00Z"), arrived_at=AS_OF)
        usage(served("a2", "2026-12-01T00:05:00Z"), arrived_at=utc(2026, 12, 1, 0, 30))

        december = balance_read(customer_id="acme", as_of=utc(2026, 12, 1, 1))
        assert (december.period, december.spend) == ("2026-12", Decimal("4.00"))
