"""Capacity lines in the pure rating core (DESIGN.md §3): one per reservation or rental in
the period, prorated to the hour, after late usage and before the discount, which never
applies to them; the minimum and the credits see the subtotal with capacity included."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.rating import (
    CapacityTerm, ContractTerms, PriceBookVersion, PriceSchedule, Quantity, TierAssignment, capacity_hours,
    capacity_lines, invoice_rate,
)

OCT = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
SCHEDULE = PriceSchedule(
    tiers=(TierAssignment("gpt-5.4", "frontier", datetime(2026, 1, 1, tzinfo=UTC)),),
    books=(PriceBookVersion(datetime(2026, 1, 1, tzinfo=UTC), {
        ("frontier", "standard", "input"): Decimal("2.50"), ("frontier", "provisioned", "input"): Decimal(0)}),),
)


def reservation(starts_at, ends_at=None, *, units=10, price="12.50") -> CapacityTerm:
    return CapacityTerm("reservation", "frontier", units, Decimal(price), starts_at, ends_at)


def usage(tokens: int, *, service_tier: str = "standard") -> Quantity:
    return Quantity("gpt-5.4", service_tier, "input", datetime(2026, 10, 20, tzinfo=UTC), tokens)


def month_starts(first: datetime, count: int) -> list[datetime]:
    months = [first]
    for _ in range(count):
        last = months[-1]
        months.append(datetime(last.year + last.month // 12, last.month % 12 + 1, 1, tzinfo=UTC))
    return months


class TestCapacityLines:
    def test_a_reservation_from_mid_month_is_prorated_to_the_hour(self):
        starts = datetime(2026, 10, 17, 13, tzinfo=UTC)  # 31 days × 24 h − (16 days × 24 h + 13 h) = 347 h

        [line] = capacity_lines([reservation(starts, units=7, price="1.234567")], start=OCT[0], end=OCT[1])

        hours = (31 - 16) * 24 - 13
        assert hours == 347
        assert line.kind == "capacity"
        assert line.amount == (7 * hours * Decimal("1.234567")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert line.amount == Decimal("2998.76")  # 2998.763243 rounded half up
        assert (line.usage_start, line.usage_end) == (starts, OCT[1])
        assert "347 h" in line.description

    def test_a_rental_line_prices_accelerators_by_the_hour(self):
        rental = CapacityTerm("rental", "iad-h100-a", 1024, Decimal("4.00"), datetime(2026, 9, 1, tzinfo=UTC),
                              datetime(2026, 10, 3, tzinfo=UTC), cluster="iad-h100-a", covered_tokens=1_500_000)

        [line] = capacity_lines([rental], start=OCT[0], end=OCT[1])

        assert line.amount == Decimal(1024 * 48 * 4)
        assert "iad-h100-a" in line.description and "1,500,000 tokens" in line.description

    def test_terms_outside_the_period_give_no_line(self):
        before = reservation(datetime(2026, 9, 1, tzinfo=UTC), OCT[0])  # ends exactly where October starts
        after = reservation(OCT[1])

        assert capacity_lines([before, after], start=OCT[0], end=OCT[1]) == []

    def test_a_term_off_the_hour_is_refused(self):
        with pytest.raises(ValueError):
            capacity_hours(reservation(datetime(2026, 10, 1, 0, 30, tzinfo=UTC)), start=OCT[0], end=OCT[1])


class TestInvoiceOrder:
    def test_capacity_sits_after_late_usage_and_is_not_discounted(self):
        late = Quantity("gpt-5.4", "standard", "input", datetime(2026, 9, 30, tzinfo=UTC), 1_000_000)

        rated = invoice_rate(usage=[usage(4_000_000)], late_usage=[late], schedule=SCHEDULE,
                             terms=ContractTerms(discount_percent=Decimal(10)),
                             capacity=[reservation(OCT[0], units=1, price="1.00")], period=OCT)

        assert [line.kind for line in rated.lines] == ["usage", "late_usage", "capacity", "discount"]
        assert rated.lines[2].amount == Decimal("744.00")  # 744 hours in October
        assert rated.lines[3].amount == Decimal("-1.25")  # 10 % of 10.00 + 2.50, not of the capacity
        assert rated.total == Decimal("10.00") + Decimal("2.50") + Decimal("744.00") - Decimal("1.25")

    def test_the_minimum_counts_capacity(self):
        terms = ContractTerms(monthly_minimum=Decimal("1000.00"))

        rated = invoice_rate(usage=[usage(4_000_000)], schedule=SCHEDULE, terms=terms,
                             capacity=[reservation(OCT[0], units=1, price="1.00")], period=OCT)

        assert [line.kind for line in rated.lines] == ["usage", "capacity", "minimum"]
        assert rated.lines[-1].amount == Decimal("1000.00") - Decimal("10.00") - Decimal("744.00")

    def test_capacity_over_the_minimum_needs_no_true_up_and_credits_take_the_subtotal(self):
        rated = invoice_rate(usage=[], schedule=SCHEDULE, terms=ContractTerms(monthly_minimum=Decimal("500.00")),
                             capacity=[reservation(OCT[0], units=1, price="1.00")], period=OCT,
                             credit_balance=Decimal("10000.00"))

        assert [line.kind for line in rated.lines] == ["capacity", "credits"]
        assert rated.subtotal == Decimal("744.00")
        assert rated.credits_applied == Decimal("744.00") and rated.total == 0

    def test_provisioned_usage_is_free_and_spillover_is_billed_per_token(self):
        rated = invoice_rate(usage=[usage(50_000_000, service_tier="provisioned"), usage(2_000_000)],
                             schedule=SCHEDULE, terms=ContractTerms(),
                             capacity=[reservation(OCT[0], units=1, price="1.00")], period=OCT)

        by_tier = {line.service_tier: line.amount for line in rated.lines if line.kind == "usage"}
        assert by_tier == {"provisioned": Decimal("0.00"), "standard": Decimal("5.00")}

    def test_capacity_needs_the_period(self):
        with pytest.raises(ValueError):
            invoice_rate(usage=[], schedule=SCHEDULE, terms=ContractTerms(), capacity=[reservation(OCT[0])])


hours_offset = st.integers(min_value=0, max_value=24 * 400)


class TestProrationInvariants:
    @given(start=hours_offset, length=st.integers(min_value=1, max_value=24 * 400))
    def test_hours_over_consecutive_months_sum_to_the_term(self, start, length):
        origin = datetime(2026, 1, 1, tzinfo=UTC)
        term = reservation(origin + timedelta(hours=start), origin + timedelta(hours=start + length))
        months = month_starts(datetime(2025, 12, 1, tzinfo=UTC), 30)  # past the longest term

        hours = [capacity_hours(term, start=a, end=b) for a, b in zip(months, months[1:])]

        assert sum(hours) == length
        assert all(h >= 0 for h in hours)

    @given(start=hours_offset, length=st.integers(min_value=1, max_value=24 * 60),
           units=st.integers(min_value=1, max_value=10_000),
           price=st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False))
    def test_each_line_is_its_own_rounded_product_and_the_total_their_sum(self, start, length, units, price):
        origin = datetime(2026, 1, 1, tzinfo=UTC)
        term = reservation(origin + timedelta(hours=start), origin + timedelta(hours=start + length),
                           units=units, price=str(price))
        months = month_starts(datetime(2025, 12, 1, tzinfo=UTC), 30)  # past the longest term

        for a, b in zip(months, months[1:]):
            rated = invoice_rate(usage=[], schedule=SCHEDULE, terms=ContractTerms(), capacity=[term], period=(a, b))
            hours = capacity_hours(term, start=a, end=b)
            expected = (units * hours * price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            assert [line.amount for line in rated.lines] == ([expected] if hours else [])
            assert rated.total == sum((line.amount for line in rated.lines), Decimal(0))
