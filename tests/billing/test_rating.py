"""The pure rating engine against DESIGN.md §2–§3, with no database.

Every expected amount here is computed independently in this module from the
design's formulas (price lookup by instant, sum tokens per line first, round once
per line ROUND_HALF_UP to cents, then discount → commitment true-up → credits), never
by calling engine internals.
"""

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import product

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.rating import (
    Band, ContractTerms, PriceBookVersion, PriceMissing, PriceSchedule, Quantity, TierAssignment, invoice_rate,
    usage_amount,
)

PERIOD_START = datetime(2026, 3, 1, tzinfo=UTC)
PERIOD_HOURS = 31 * 24
MODELS = ("gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano")
MODEL_TIERS = ("frontier", "mini", "nano")
SERVICE_TIERS = ("standard", "batch", "priority", "flex", "provisioned")  # the seeded catalog (DESIGN.md §1)
TOKEN_CLASSES = ("input", "cached_input", "cache_write", "cache_write_long", "audio_input", "output", "audio_output")
PRICE_KEYS = tuple(product(MODEL_TIERS, SERVICE_TIERS, TOKEN_CLASSES))
ONE_MILLION = Decimal(1000000)
CENTS = Decimal("0.01")
USAGE_KINDS = ("usage", "late_usage")

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hour(index: int) -> datetime:
    return PERIOD_START + timedelta(hours=index)


def half_up_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENTS, rounding=ROUND_HALF_UP)


def priced(tokens: int, unit_price_per_million: Decimal) -> Decimal:
    return half_up_cents(Decimal(tokens) * unit_price_per_million / ONE_MILLION)


# --- an independent reference rater -------------------------------------------------------------------------------

def tier_in_force(tiers, model: str, at: datetime) -> str:
    started = [a for a in tiers if a.model == model and a.effective_from <= at]
    if not started:
        raise LookupError(model)
    return max(started, key=lambda a: a.effective_from).tier


def book_price_in_force(books, key, at: datetime) -> Decimal:
    started = [b for b in books if b.effective_from <= at]
    return max(started, key=lambda b: b.effective_from).prices[key]


def expected_line_tokens(quantities, *, tiers, books, terms: ContractTerms) -> Counter:
    """Tokens per (model, service tier, class, unit price) for one period, summed before pricing.

    Graduated bands are applied to the running token count of each price key, walked in
    hour order: band i holds the overlap of [tokens before, tokens after) with its range.
    """
    tokens: Counter = Counter()
    banded: dict = defaultdict(list)
    for q in quantities:
        if q.tokens == 0:
            continue
        key = (tier_in_force(tiers, q.model, q.hour), q.service_tier, q.token_class)
        if key in terms.volume_tiers:
            banded[key].append(q)
        elif key in terms.unit_price_overrides:
            tokens[(q.model, q.service_tier, q.token_class, terms.unit_price_overrides[key])] += q.tokens
        else:
            tokens[(q.model, q.service_tier, q.token_class, book_price_in_force(books, key, q.hour))] += q.tokens
    for key, items in banded.items():
        before = 0
        for q in sorted(items, key=lambda q: q.hour):
            after, lower = before + q.tokens, 0
            for band in terms.volume_tiers[key]:
                upper = after if band.tokens_up_to is None else band.tokens_up_to
                inside = max(0, min(after, upper) - max(before, lower))
                if inside:
                    tokens[(q.model, q.service_tier, q.token_class, band.unit_price_per_million)] += inside
                lower = upper
            before = after
    return tokens


def usage_lines_by_key(invoice, kind: str = "usage") -> dict:
    lines = [line for line in invoice.lines if line.kind == kind]
    by_key = {(l.model, l.service_tier, l.token_class, l.unit_price): (l.tokens, l.amount) for l in lines}
    assert len(by_key) == len(lines), "one usage line per (model, service tier, token class, unit price)"
    return by_key


def expected_lines(quantities, *, tiers, books, terms) -> dict:
    tokens = expected_line_tokens(quantities, tiers=tiers, books=books, terms=terms)
    return {key: (count, priced(count, key[3])) for key, count in tokens.items()}


def tokens_per_model_class(quantities) -> Counter:
    totals: Counter = Counter()
    for q in quantities:
        if q.tokens:
            totals[(q.model, q.service_tier, q.token_class)] += q.tokens
    return totals


def line_tokens_per_model_class(invoice) -> Counter:
    totals: Counter = Counter()
    for line in invoice.lines:
        if line.kind == "usage":
            totals[(line.model, line.service_tier, line.token_class)] += line.tokens
    return totals


# --- strategies ---------------------------------------------------------------------------------------------------

unit_prices = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=6, allow_nan=False,
                          allow_infinity=False)
cent_amounts = st.decimals(min_value=Decimal(0), max_value=Decimal(5000), places=2, allow_nan=False,
                           allow_infinity=False)
percentages = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=3, allow_nan=False,
                          allow_infinity=False)


def price_dicts():
    return st.fixed_dictionaries({key: unit_prices for key in PRICE_KEYS})


@st.composite
def tier_histories(draw):
    """Every model has a tier from before the period; some move to another tier mid-period."""
    tiers = []
    for model in MODELS:
        tiers.append(TierAssignment(model=model, tier=draw(st.sampled_from(MODEL_TIERS)),
                                    effective_from=PERIOD_START - timedelta(days=draw(st.integers(0, 60)))))
        if draw(st.booleans()):
            tiers.append(TierAssignment(model=model, tier=draw(st.sampled_from(MODEL_TIERS)),
                                        effective_from=hour(draw(st.integers(1, PERIOD_HOURS - 1)))))
    return tuple(tiers)


@st.composite
def price_books(draw):
    """One version in force from before the period, zero to two more starting mid-period."""
    starts = [PERIOD_START - timedelta(hours=draw(st.integers(0, 24 * 40)))]
    starts += [hour(h) for h in draw(st.lists(st.integers(1, PERIOD_HOURS - 1), max_size=2, unique=True))]
    return tuple(PriceBookVersion(effective_from=at, prices=draw(price_dicts())) for at in starts)


def quantities(*, max_tokens: int = 10**10, max_size: int = 25, hours=None):
    hours = hours if hours is not None else st.integers(0, PERIOD_HOURS - 1)
    return st.lists(
        st.builds(lambda model, service_tier, token_class, h, tokens: Quantity(
            model=model, service_tier=service_tier, token_class=token_class, hour=hour(h), tokens=tokens),
            st.sampled_from(MODELS), st.sampled_from(SERVICE_TIERS), st.sampled_from(TOKEN_CLASSES),
            hours, st.integers(0, max_tokens)),
        max_size=max_size)


@st.composite
def graduated_quantities(draw):
    """Quantities where no two models share an hour, so the hour order alone fixes the walk."""
    items = []
    for _ in range(draw(st.integers(0, 25))):
        model_index = draw(st.integers(0, len(MODELS) - 1))
        items.append(Quantity(
            model=MODELS[model_index], service_tier=draw(st.sampled_from(SERVICE_TIERS)),
            token_class=draw(st.sampled_from(TOKEN_CLASSES)),
            hour=hour(3 * draw(st.integers(0, PERIOD_HOURS // 3 - 1)) + model_index),
            tokens=draw(st.integers(0, 3_000_000))))
    return items


@st.composite
def band_schedules(draw):
    bounds = sorted(draw(st.lists(st.integers(1, 8_000_000), max_size=3, unique=True)))
    return tuple(Band(tokens_up_to=b, unit_price_per_million=draw(unit_prices)) for b in bounds) + (
        Band(tokens_up_to=None, unit_price_per_million=draw(unit_prices)),)


@st.composite
def overrides(draw):
    keys = draw(st.lists(st.sampled_from(PRICE_KEYS), max_size=6, unique=True))
    return {key: draw(unit_prices) for key in keys}


@st.composite
def volume_tier_terms(draw):
    """Bands for some keys, overrides for some; bands win where both exist (docs/decisions.md, Volume tiers)."""
    keys = draw(st.lists(st.sampled_from(PRICE_KEYS), min_size=1, max_size=12, unique=True))
    return ContractTerms(unit_price_overrides=draw(overrides()),
                         volume_tiers={key: draw(band_schedules()) for key in keys})


def split_and_shuffle(data, items):
    """Each quantity becomes two at the same hour (one may be empty), in a drawn order."""
    pieces = []
    for q in items:
        cut = data.draw(st.integers(0, q.tokens))
        pieces += [Quantity(q.model, q.service_tier, q.token_class, q.hour, cut),
                   Quantity(q.model, q.service_tier, q.token_class, q.hour, q.tokens - cut)]
    return data.draw(st.permutations(pieces))


# --- demo prices (DESIGN.md §2) -----------------------------------------------------------------------------------

DEMO_STANDARD = {
    ("frontier", "input"): Decimal("2.50"), ("frontier", "cached_input"): Decimal("0.25"),
    ("frontier", "output"): Decimal("15.00"), ("nano", "input"): Decimal("0.20"),
    # cache writes 1.25 × and 2 × input, audio 8 × input and 4 × output (scripts/demo_pricing.py)
    ("frontier", "cache_write"): Decimal("3.125"), ("frontier", "cache_write_long"): Decimal("5.00"),
    ("frontier", "audio_input"): Decimal("20.00"), ("frontier", "audio_output"): Decimal("60.00"),
}
DEMO_SERVICE_FACTOR = {"standard": Decimal(1), "batch": Decimal("0.5"), "priority": Decimal(2),
                       "flex": Decimal("0.5"), "provisioned": Decimal(0)}
DEMO_BOOK = PriceBookVersion(
    effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    prices={(tier, service, cls): price * DEMO_SERVICE_FACTOR[service]
            for (tier, cls), price in DEMO_STANDARD.items() for service in SERVICE_TIERS},
)
DEMO_TIERS = (
    TierAssignment(model="gpt-5.4", tier="frontier", effective_from=datetime(2025, 6, 1, tzinfo=UTC)),
    TierAssignment(model="gpt-5.4-mini", tier="mini", effective_from=datetime(2025, 6, 1, tzinfo=UTC)),
    TierAssignment(model="gpt-5.4-nano", tier="nano", effective_from=datetime(2025, 6, 1, tzinfo=UTC)),
)
DEMO_SCHEDULE = PriceSchedule(tiers=DEMO_TIERS, books=(DEMO_BOOK,))


def q(model: str, service_tier: str, token_class: str, at: datetime, tokens: int) -> Quantity:
    return Quantity(model=model, service_tier=service_tier, token_class=token_class, hour=at, tokens=tokens)


def line_summary(invoice, kind: str = "usage") -> dict:
    return {(l.model, l.service_tier, l.token_class): (l.tokens, str(l.unit_price), str(l.amount))
            for l in invoice.lines if l.kind == kind}


# --- book and override path ---------------------------------------------------------------------------------------

class TestUsageLines:
    @FAST
    @given(tiers=tier_histories(), books=price_books(), usage=quantities(), price_overrides=overrides())
    def test_lines_match_an_independent_rating(self, tiers, books, usage, price_overrides):
        terms = ContractTerms(unit_price_overrides=price_overrides)

        invoice = invoice_rate(usage=usage, schedule=PriceSchedule(tiers=tiers, books=books), terms=terms)

        assert usage_lines_by_key(invoice) == expected_lines(usage, tiers=tiers, books=books, terms=terms)
        assert line_tokens_per_model_class(invoice) == tokens_per_model_class(usage)
        assert all(line.kind == "usage" for line in invoice.lines)
        assert invoice.total == sum((line.amount for line in invoice.lines), Decimal(0))

    @FAST
    @given(tiers=tier_histories(), books=price_books(), usage=quantities(), price_overrides=overrides(),
           data=st.data())
    def test_order_and_split_of_quantities_do_not_matter(self, tiers, books, usage, price_overrides, data):
        schedule = PriceSchedule(tiers=tiers, books=books)
        terms = ContractTerms(unit_price_overrides=price_overrides, discount_percent=Decimal("7.5"),
                              monthly_minimum=Decimal("100.00"))
        reshaped = split_and_shuffle(data, usage)

        as_given = invoice_rate(usage=usage, schedule=schedule, terms=terms, credit_balance=Decimal("3.00"))
        as_reshaped = invoice_rate(usage=reshaped, schedule=schedule, terms=terms, credit_balance=Decimal("3.00"))

        assert as_reshaped.lines == as_given.lines

    def test_tokens_are_summed_over_the_period_before_rounding(self):
        # 300 output tokens at $15/1M is $0.0045 → $0.00 per hour, but 900 over the period is $0.0135 → $0.01.
        usage = [q("gpt-5.4", "standard", "output", hour(h), 300) for h in (0, 5, 700)]

        invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=ContractTerms())

        assert line_summary(invoice) == {("gpt-5.4", "standard", "output"): (900, "15.00", "0.01")}

    def test_half_a_cent_rounds_up(self):
        usage = [q("gpt-5.4", "standard", "input", hour(0), 2_000),  # 0.005 exactly
                 q("gpt-5.4", "standard", "cached_input", hour(0), 19_999)]  # 0.00499975

        invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=ContractTerms())

        assert line_summary(invoice) == {("gpt-5.4", "standard", "input"): (2_000, "2.50", "0.01"),
                                         ("gpt-5.4", "standard", "cached_input"): (19_999, "0.25", "0.00")}

    def test_contract_override_replaces_the_book_price_for_its_key_only(self):
        terms = ContractTerms(unit_price_overrides={("frontier", "standard", "input"): Decimal("2.000001")})
        usage = [q("gpt-5.4", "standard", "input", hour(0), 5_000_000),
                 q("gpt-5.4", "batch", "input", hour(0), 5_000_000)]

        invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=terms)

        assert line_summary(invoice) == {("gpt-5.4", "standard", "input"): (5_000_000, "2.000001", "10.00"),
                                         ("gpt-5.4", "batch", "input"): (5_000_000, "1.250", "6.25")}


class TestMidPeriodChanges:
    def test_a_price_book_version_starting_mid_month_splits_the_line(self):
        raised = PriceBookVersion(effective_from=datetime(2026, 3, 16, tzinfo=UTC),
                                  prices={**DEMO_BOOK.prices, ("frontier", "standard", "input"): Decimal("3.10")})
        schedule = PriceSchedule(tiers=DEMO_TIERS, books=(raised, DEMO_BOOK))
        usage = [q("gpt-5.4", "standard", "input", datetime(2026, 3, 1, tzinfo=UTC), 1_000_000),
                 q("gpt-5.4", "standard", "input", datetime(2026, 3, 15, 23, tzinfo=UTC), 1_000_001),
                 q("gpt-5.4", "standard", "input", datetime(2026, 3, 16, tzinfo=UTC), 333_333),
                 q("gpt-5.4", "standard", "input", datetime(2026, 3, 31, 23, tzinfo=UTC), 1_000_000)]

        invoice = invoice_rate(usage=usage, schedule=schedule, terms=ContractTerms())

        assert {(l.tokens, str(l.unit_price), str(l.amount)) for l in invoice.lines} == {
            (2_000_001, "2.50", "5.00"),  # 5.0000025
            (1_333_333, "3.10", "4.13"),  # 4.1333323
        }
        assert str(invoice.total) == "9.13"

    def test_tier_history_prices_each_hour_by_the_tier_it_was_in(self):
        tiers = (*DEMO_TIERS,
                 TierAssignment(model="gpt-5.4-nano", tier="frontier",
                                effective_from=datetime(2026, 3, 10, 12, tzinfo=UTC)))
        schedule = PriceSchedule(tiers=tiers, books=(DEMO_BOOK,))
        usage = [q("gpt-5.4-nano", "standard", "input", datetime(2026, 3, 10, 11, tzinfo=UTC), 10_000_000),
                 q("gpt-5.4-nano", "standard", "input", datetime(2026, 3, 10, 12, tzinfo=UTC), 1_000_000)]

        invoice = invoice_rate(usage=usage, schedule=schedule, terms=ContractTerms())

        assert {(l.tokens, str(l.unit_price), str(l.amount)) for l in invoice.lines} == {
            (10_000_000, "0.20", "2.00"), (1_000_000, "2.50", "2.50")}
        assert all(l.model == "gpt-5.4-nano" for l in invoice.lines)


class TestPriceMissing:
    @pytest.mark.parametrize("usage", [
        q("unknown-model", "standard", "input", hour(0), 1),
        q("gpt-5.4", "standard", "input", datetime(2025, 5, 31, 23, tzinfo=UTC), 1),  # before its first tier
    ], ids=["model-never-tiered", "before-first-tier"])
    def test_usage_without_a_tier(self, usage):
        with pytest.raises(PriceMissing):
            invoice_rate(usage=[usage], schedule=DEMO_SCHEDULE, terms=ContractTerms())

    @pytest.mark.parametrize("usage", [
        q("gpt-5.4-mini", "standard", "input", hour(0), 1),  # the book has no mini prices
        q("gpt-5.4-nano", "standard", "output", hour(0), 1),  # nor nano output
        q("gpt-5.4", "standard", "input", datetime(2025, 12, 31, 23, tzinfo=UTC), 1),  # before the first book
    ], ids=["tier-unpriced", "class-unpriced", "before-first-book"])
    def test_usage_without_a_price(self, usage):
        with pytest.raises(PriceMissing):
            invoice_rate(usage=[usage], schedule=DEMO_SCHEDULE, terms=ContractTerms())

        with pytest.raises(PriceMissing):
            usage_amount(usage=[usage], schedule=DEMO_SCHEDULE, terms=ContractTerms())

    def test_the_version_in_force_decides_even_if_an_older_one_had_the_price(self):
        newer = PriceBookVersion(effective_from=datetime(2026, 3, 2, tzinfo=UTC),
                                 prices={k: v for k, v in DEMO_BOOK.prices.items() if k[2] != "output"})
        schedule = PriceSchedule(tiers=DEMO_TIERS, books=(DEMO_BOOK, newer))

        priced_before = invoice_rate(usage=[q("gpt-5.4", "standard", "output", hour(23), 1_000_000)],
                                     schedule=schedule, terms=ContractTerms())

        assert str(priced_before.total) == "15.00"
        with pytest.raises(PriceMissing):
            invoice_rate(usage=[q("gpt-5.4", "standard", "output", hour(24), 1)], schedule=schedule,
                         terms=ContractTerms())

    def test_an_override_prices_usage_the_book_does_not(self):
        terms = ContractTerms(unit_price_overrides={("mini", "standard", "input"): Decimal("0.40")})

        invoice = invoice_rate(usage=[q("gpt-5.4-mini", "standard", "input", hour(0), 1_000_000)],
                               schedule=DEMO_SCHEDULE, terms=terms)

        assert str(invoice.total) == "0.40"


# --- graduated volume tiers ---------------------------------------------------------------------------------------

FRONTIER_INPUT = ("frontier", "standard", "input")
BANDS = (Band(1_000, Decimal(10)), Band(3_000, Decimal(5)), Band(None, Decimal(1)))


def band_tokens(invoice) -> dict:
    return {str(l.unit_price): l.tokens for l in invoice.lines if l.kind == "usage"}


class TestGraduatedTiers:
    @pytest.mark.parametrize(("tokens", "expected"), [
        (999, {"10": 999}),
        (1_000, {"10": 1_000}),
        (1_001, {"10": 1_000, "5": 1}),
        (3_000, {"10": 1_000, "5": 2_000}),
        (3_001, {"10": 1_000, "5": 2_000, "1": 1}),
    ])
    def test_band_bounds_are_inclusive(self, tokens, expected):
        terms = ContractTerms(volume_tiers={FRONTIER_INPUT: BANDS})

        invoice = invoice_rate(usage=[q("gpt-5.4", "standard", "input", hour(0), tokens)],
                               schedule=DEMO_SCHEDULE, terms=terms)

        assert band_tokens(invoice) == expected

    def test_a_bound_reached_across_hours_sends_the_next_token_to_the_next_band(self):
        terms = ContractTerms(volume_tiers={FRONTIER_INPUT: BANDS})
        usage = [q("gpt-5.4", "standard", "input", hour(9), 1),
                 q("gpt-5.4", "standard", "input", hour(0), 600),
                 q("gpt-5.4", "standard", "input", hour(3), 400)]

        invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=terms)

        assert band_tokens(invoice) == {"10": 1_000, "5": 1}
        assert str(invoice.total) == "0.01"  # 1,000 × 10 / 1M = 0.01; 1 × 5 / 1M = 0.000005 → 0.00

    def test_tokens_are_walked_in_hour_order_across_models_of_one_tier(self):
        tiers = (*DEMO_TIERS, TierAssignment(model="a-frontier-model", tier="frontier",
                                             effective_from=datetime(2025, 1, 1, tzinfo=UTC)))
        schedule = PriceSchedule(tiers=tiers, books=(DEMO_BOOK,))
        terms = ContractTerms(volume_tiers={FRONTIER_INPUT: BANDS})
        usage = [q("a-frontier-model", "standard", "input", hour(5), 800),  # served later, sorts first by name
                 q("gpt-5.4", "standard", "input", hour(1), 700)]

        invoice = invoice_rate(usage=usage, schedule=schedule, terms=terms)

        assert {(l.model, str(l.unit_price), l.tokens) for l in invoice.lines} == {
            ("gpt-5.4", "10", 700), ("a-frontier-model", "10", 300), ("a-frontier-model", "5", 500)}

    def test_models_sharing_an_hour_share_the_bands(self):
        tiers = (*DEMO_TIERS, TierAssignment(model="a-frontier-model", tier="frontier",
                                             effective_from=datetime(2025, 1, 1, tzinfo=UTC)))
        schedule = PriceSchedule(tiers=tiers, books=(DEMO_BOOK,))
        terms = ContractTerms(volume_tiers={FRONTIER_INPUT: BANDS})
        usage = [q("a-frontier-model", "standard", "input", hour(2), 2_000),
                 q("gpt-5.4", "standard", "input", hour(2), 2_000)]

        invoice = invoice_rate(usage=usage, schedule=schedule, terms=terms)

        per_price: Counter = Counter()
        for line in invoice.lines:
            per_price[str(line.unit_price)] += line.tokens
        assert per_price == {"10": 1_000, "5": 2_000, "1": 1_000}
        assert line_tokens_per_model_class(invoice) == tokens_per_model_class(usage)

    def test_bands_follow_the_tier_at_the_hour(self):
        tiers = (*DEMO_TIERS, TierAssignment(model="gpt-5.4-nano", tier="frontier",
                                             effective_from=datetime(2026, 3, 10, tzinfo=UTC)))
        schedule = PriceSchedule(tiers=tiers, books=(DEMO_BOOK,))
        terms = ContractTerms(volume_tiers={
            ("nano", "standard", "input"): (Band(500, Decimal("0.30")), Band(None, Decimal("0.10"))),
            FRONTIER_INPUT: BANDS})
        usage = [q("gpt-5.4-nano", "standard", "input", datetime(2026, 3, 9, 23, tzinfo=UTC), 800),
                 q("gpt-5.4-nano", "standard", "input", datetime(2026, 3, 10, tzinfo=UTC), 1_200)]

        invoice = invoice_rate(usage=usage, schedule=schedule, terms=terms)

        assert band_tokens(invoice) == {"0.30": 500, "0.10": 300, "10": 1_000, "5": 200}

    def test_usage_beyond_a_schedule_without_an_open_ended_band_is_refused(self):
        terms = ContractTerms(volume_tiers={FRONTIER_INPUT: BANDS[:2]})

        with pytest.raises((ValueError, PriceMissing)):
            invoice_rate(usage=[q("gpt-5.4", "standard", "input", hour(0), 3_001)], schedule=DEMO_SCHEDULE,
                         terms=terms)

    @FAST
    @given(tiers=tier_histories(), books=price_books(), usage=graduated_quantities(), terms=volume_tier_terms())
    def test_lines_match_an_independent_band_walk(self, tiers, books, usage, terms):
        invoice = invoice_rate(usage=usage, schedule=PriceSchedule(tiers=tiers, books=books), terms=terms)

        assert usage_lines_by_key(invoice) == expected_lines(usage, tiers=tiers, books=books, terms=terms)
        assert line_tokens_per_model_class(invoice) == tokens_per_model_class(usage)
        assert invoice.total == sum((line.amount for line in invoice.lines), Decimal(0))

    @FAST
    @given(tiers=tier_histories(), books=price_books(), usage=graduated_quantities(), terms=volume_tier_terms(),
           data=st.data())
    def test_splitting_an_hour_and_reordering_input_do_not_matter(self, tiers, books, usage, terms, data):
        schedule = PriceSchedule(tiers=tiers, books=books)
        reshaped = split_and_shuffle(data, usage)

        as_given = invoice_rate(usage=usage, schedule=schedule, terms=terms)
        as_reshaped = invoice_rate(usage=reshaped, schedule=schedule, terms=terms)

        assert as_reshaped.lines == as_given.lines


# --- discount, commitment true-up, credits ------------------------------------------------------------------------

def expected_adjustments(usage_sum: Decimal, *, percent: Decimal, minimum: Decimal | None, balance: Decimal):
    discount = -half_up_cents(usage_sum * percent / 100)
    after_discount = usage_sum + discount
    true_up = minimum - after_discount if minimum is not None and after_discount < minimum else None
    subtotal = after_discount + (true_up or 0)
    credits = min(balance, subtotal) if balance > 0 and subtotal > 0 else None
    return discount, true_up, subtotal, credits


class TestAdjustments:
    @settings(max_examples=150, deadline=None)
    @given(tiers=tier_histories(), books=price_books(), usage=quantities(max_tokens=2 * 10**8),
           late=quantities(max_tokens=10**8, max_size=4, hours=st.integers(-24 * 28, -1)),
           price_overrides=overrides(), percent=percentages, minimum=st.none() | cent_amounts,
           balance=cent_amounts)
    def test_discount_then_true_up_then_credits(self, tiers, books, usage, late, price_overrides, percent, minimum,
                                                balance):
        # Late usage in these cases is February's: the first tier and book versions start on or before Feb 1.
        tiers = tuple(a if a.effective_from > PERIOD_START else
                      TierAssignment(a.model, a.tier, datetime(2026, 1, 1, tzinfo=UTC)) for a in tiers)
        books = tuple(b if b.effective_from > PERIOD_START else
                      PriceBookVersion(datetime(2026, 1, 1, tzinfo=UTC), b.prices) for b in books)
        terms = ContractTerms(discount_percent=percent, monthly_minimum=minimum,
                              unit_price_overrides=price_overrides)
        expected_usage = expected_lines(usage, tiers=tiers, books=books, terms=terms)
        expected_late = expected_lines(late, tiers=tiers, books=books, terms=terms)
        usage_sum = sum((amount for _, amount in [*expected_usage.values(), *expected_late.values()]), Decimal(0))
        discount, true_up, subtotal, credits = expected_adjustments(
            usage_sum, percent=percent, minimum=minimum, balance=balance)

        invoice = invoice_rate(usage=usage, late_usage=late, schedule=PriceSchedule(tiers=tiers, books=books),
                               terms=terms, credit_balance=balance)

        assert usage_lines_by_key(invoice) == expected_usage
        assert usage_lines_by_key(invoice, "late_usage") == expected_late
        kinds = [line.kind for line in invoice.lines]
        assert kinds == sorted(kinds, key=["usage", "late_usage", "discount", "minimum", "credits"].index)
        by_kind = defaultdict(list)
        for line in invoice.lines:
            by_kind[line.kind].append(line.amount)
        assert len(by_kind["discount"]) <= 1 and sum(by_kind["discount"], Decimal(0)) == discount
        assert by_kind["minimum"] == ([true_up] if true_up is not None else [])
        assert by_kind["credits"] == ([-credits] if credits is not None else [])
        assert all(line.amount == line.amount.quantize(CENTS) for line in invoice.lines)
        assert invoice.subtotal == subtotal
        assert invoice.credits_applied == (credits or 0)
        assert invoice.total == sum((line.amount for line in invoice.lines), Decimal(0))
        assert invoice.total == invoice.subtotal - invoice.credits_applied
        assert invoice.total >= 0

    @FAST
    @given(tiers=tier_histories(), books=price_books(), usage=quantities(), price_overrides=overrides(),
           percent=percentages, minimum=st.none() | cent_amounts, balance=cent_amounts)
    def test_usage_amount_is_the_sum_of_usage_lines_before_adjustments(self, tiers, books, usage, price_overrides,
                                                                       percent, minimum, balance):
        schedule = PriceSchedule(tiers=tiers, books=books)
        terms = ContractTerms(discount_percent=percent, monthly_minimum=minimum, unit_price_overrides=price_overrides)

        invoice = invoice_rate(usage=usage, schedule=schedule, terms=terms, credit_balance=balance)

        assert usage_amount(usage=usage, schedule=schedule, terms=terms) == sum(
            (line.amount for line in invoice.lines if line.kind == "usage"), Decimal(0))

    @pytest.mark.parametrize(("tokens", "balance"), [(4_000_000, Decimal(0)), (0, Decimal("50.00"))],
                             ids=["no-balance", "nothing-owed"])
    def test_no_credits_line_when_balance_or_subtotal_is_zero(self, tokens, balance):
        usage = [q("gpt-5.4", "standard", "input", hour(0), tokens)]

        invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=ContractTerms(monthly_minimum=Decimal(0)),
                               credit_balance=balance)

        assert [line.kind for line in invoice.lines if line.kind == "credits"] == []
        assert invoice.credits_applied == 0
        assert invoice.total == Decimal(tokens) * Decimal("2.50") / ONE_MILLION

    def test_no_true_up_when_the_minimum_is_met_exactly(self):
        invoice = invoice_rate(usage=[q("gpt-5.4", "standard", "input", hour(0), 4_000_000)],
                               schedule=DEMO_SCHEDULE, terms=ContractTerms(monthly_minimum=Decimal("10.00")))

        assert [(line.kind, str(line.amount)) for line in invoice.lines] == [("usage", "10.00")]

    def test_credits_cover_the_true_up_too(self):
        invoice = invoice_rate(usage=[], schedule=DEMO_SCHEDULE,
                               terms=ContractTerms(monthly_minimum=Decimal("20.00")), credit_balance=Decimal(50))

        assert [(line.kind, str(line.amount)) for line in invoice.lines] == [("minimum", "20.00"),
                                                                             ("credits", "-20.00")]
        assert str(invoice.total) == "0.00"


# --- a worked example with the demo prices ------------------------------------------------------------------------

DEMO_USAGE = [
    q("gpt-5.4", "standard", "input", datetime(2026, 3, 1, tzinfo=UTC), 1_000_000),
    q("gpt-5.4", "standard", "input", datetime(2026, 3, 15, 12, tzinfo=UTC), 234_567),
    q("gpt-5.4", "standard", "cached_input", datetime(2026, 3, 2, 8, tzinfo=UTC), 400_000),
    q("gpt-5.4", "standard", "output", datetime(2026, 3, 3, tzinfo=UTC), 300),
    q("gpt-5.4", "standard", "output", datetime(2026, 3, 4, tzinfo=UTC), 300),
    q("gpt-5.4", "standard", "output", datetime(2026, 3, 31, 23, tzinfo=UTC), 300),
    q("gpt-5.4", "batch", "input", datetime(2026, 3, 20, 4, tzinfo=UTC), 2_000_001),
    q("gpt-5.4", "priority", "cached_input", datetime(2026, 3, 21, 5, tzinfo=UTC), 10_000),
    q("gpt-5.4", "priority", "output", datetime(2026, 3, 21, 5, tzinfo=UTC), 100_003),
    q("gpt-5.4-nano", "standard", "input", datetime(2026, 3, 9, tzinfo=UTC), 12_345_678),
]
DEMO_LINES = {
    ("gpt-5.4", "standard", "input"): (1_234_567, "2.50", "3.09"),  # 3.0864175
    ("gpt-5.4", "standard", "cached_input"): (400_000, "0.25", "0.10"),  # 0.1
    ("gpt-5.4", "standard", "output"): (900, "15.00", "0.01"),  # 0.0135
    ("gpt-5.4", "batch", "input"): (2_000_001, "1.250", "2.50"),  # 2.50000125
    ("gpt-5.4", "priority", "cached_input"): (10_000, "0.50", "0.01"),  # 0.005, half up
    ("gpt-5.4", "priority", "output"): (100_003, "30.00", "3.00"),  # 3.00009
    ("gpt-5.4-nano", "standard", "input"): (12_345_678, "0.20", "2.47"),  # 2.4691356
}


class TestWorkedExample:
    def test_demo_invoice_with_discount_minimum_and_credits(self):
        terms = ContractTerms(discount_percent=Decimal("12.5"), monthly_minimum=Decimal("25.00"))

        invoice = invoice_rate(usage=DEMO_USAGE, schedule=DEMO_SCHEDULE, terms=terms, credit_balance=Decimal("7.50"))

        assert line_summary(invoice) == DEMO_LINES
        # usage 11.18; discount 12.5% = 1.3975 → 1.40; 9.78 is short of 25.00 by 15.22; credits 7.50.
        assert [(line.kind, str(line.amount)) for line in invoice.lines[len(DEMO_LINES):]] == [
            ("discount", "-1.40"), ("minimum", "15.22"), ("credits", "-7.50")]
        assert str(invoice.subtotal) == "25.00"
        assert str(invoice.credits_applied) == "7.50"
        assert str(invoice.total) == "17.50"
        assert str(usage_amount(usage=DEMO_USAGE, schedule=DEMO_SCHEDULE, terms=terms)) == "11.18"

    def test_demo_invoice_fully_covered_by_credits(self):
        terms = ContractTerms(discount_percent=Decimal("12.5"))

        invoice = invoice_rate(usage=list(reversed(DEMO_USAGE)), schedule=DEMO_SCHEDULE, terms=terms,
                               credit_balance=Decimal(100))

        assert line_summary(invoice) == DEMO_LINES
        assert [(line.kind, str(line.amount)) for line in invoice.lines[len(DEMO_LINES):]] == [
            ("discount", "-1.40"), ("credits", "-9.78")]
        assert str(invoice.total) == "0.00"

    def test_late_usage_is_labelled_priced_at_its_own_time_and_discounted(self):
        february = PriceBookVersion(effective_from=datetime(2026, 2, 1, tzinfo=UTC),
                                    prices={**DEMO_BOOK.prices, ("frontier", "standard", "input"): Decimal("2.00")})
        schedule = PriceSchedule(tiers=DEMO_TIERS, books=(DEMO_BOOK, february,
                                 PriceBookVersion(datetime(2026, 3, 1, tzinfo=UTC), DEMO_BOOK.prices)))
        late = [q("gpt-5.4", "standard", "input", datetime(2026, 2, 28, 23, tzinfo=UTC), 1_000_000)]

        invoice = invoice_rate(usage=[q("gpt-5.4", "standard", "input", hour(0), 1_000_000)], late_usage=late,
                               schedule=schedule, terms=ContractTerms(discount_percent=Decimal(10)))

        assert [(l.kind, str(l.unit_price), str(l.amount), l.period) for l in invoice.lines] == [
            ("usage", "2.50", "2.50", ""), ("late_usage", "2.00", "2.00", "2026-02"), ("discount", "None", "-0.45", "")]
        assert "2026-02" in invoice.lines[1].description


# --- every token class a provider bills (DESIGN.md §1) -----------------------------------------------------------
#
# The hourly rollups carry an event's totals and parts (input_tokens with its cached, cache-written
# and audio parts; output_tokens with its audio and reasoning parts). Here the priced classes are
# drawn first and the totals built from them, so the expected classes are known without any formula
# of the code under test; billing.selectors.quantities_from_rows turns the rows back into quantities.

ROW_CUSTOMERS = ("acme", "globex")


@st.composite
def hourly_rows(draw):
    """(rows as the rollups give them, the priced classes each row holds by construction)."""
    rows, truth = [], []
    for _ in range(draw(st.integers(0, 12))):
        classes = {cls: draw(st.integers(0, 4_000_000) | st.just(0)) for cls in TOKEN_CLASSES}
        text_and_audio_output = classes["output"] + classes["audio_output"]
        reasoning = draw(st.integers(0, text_and_audio_output))
        input_total = sum(classes[c] for c in ("input", "cached_input", "cache_write", "cache_write_long",
                                                "audio_input"))
        key = (draw(st.sampled_from(ROW_CUSTOMERS)), draw(st.sampled_from(MODELS)),
               draw(st.sampled_from(SERVICE_TIERS)), hour(draw(st.integers(0, PERIOD_HOURS - 1))))
        # metering.token_classes.FIELDS order: input, cached, output, cache write, long, audio in, audio out, reasoning
        rows.append((*key, input_total, classes["cached_input"], text_and_audio_output, classes["cache_write"],
                     classes["cache_write_long"], classes["audio_input"], classes["audio_output"], reasoning))
        truth.append((key, classes))
    return rows, truth


def quantities_of(truth, customer_id: str) -> list[Quantity]:
    return [Quantity(model=model, service_tier=tier, token_class=cls, hour=at, tokens=count)
            for (customer, model, tier, at), classes in truth if customer == customer_id
            for cls, count in classes.items()]


class TestEveryTokenClass:
    @FAST
    @given(tiers=tier_histories(), books=price_books(), drawn=hourly_rows(), terms=volume_tier_terms())
    def test_rollup_rows_are_priced_in_the_seven_classes_as_an_independent_rating(self, tiers, books, drawn,
                                                                                 terms):
        from billing.selectors import quantities_from_rows

        rows, truth = drawn
        schedule = PriceSchedule(tiers=tiers, books=books)

        by_customer = quantities_from_rows(rows)

        for customer_id in ROW_CUSTOMERS:
            usage = by_customer.get(customer_id, [])
            expected_usage = quantities_of(truth, customer_id)
            assert tokens_per_model_class(usage) == tokens_per_model_class(expected_usage)
            if len({q.hour for q in expected_usage}) == len(expected_usage) // len(TOKEN_CLASSES):
                # one row per hour: the band walk's order is fixed by the hour alone
                invoice = invoice_rate(usage=usage, schedule=schedule, terms=terms)
                assert usage_lines_by_key(invoice) == expected_lines(expected_usage, tiers=tiers, books=books,
                                                                     terms=terms)
                assert invoice.total == sum((line.amount for line in invoice.lines), Decimal(0))
        assert all(q.tokens > 0 and q.token_class in TOKEN_CLASSES for qs in by_customer.values() for q in qs)

    def test_reasoning_is_priced_as_the_output_it_is_part_of(self):
        from billing.selectors import quantities_from_rows

        # 1,000 output tokens, 700 of them reasoning and 200 audio: 800 text output, 200 audio output.
        rows = [("acme", "gpt-5.4", "standard", hour(0), 0, 0, 1_000, 0, 0, 0, 200, 700)]

        usage = quantities_from_rows(rows)["acme"]

        assert {(q.token_class, q.tokens) for q in usage} == {("output", 800), ("audio_output", 200)}

    @pytest.mark.parametrize(("token_class", "service_tier", "description"), [
        ("input", "standard", "gpt-5.4 standard input tokens"),
        ("cached_input", "standard", "gpt-5.4 standard cached input tokens"),
        ("cache_write", "flex", "gpt-5.4 flex 5-minute cache write tokens"),
        ("cache_write_long", "priority", "gpt-5.4 priority 1-hour cache write tokens"),
        ("audio_input", "batch", "gpt-5.4 batch audio input tokens"),
        ("output", "standard", "gpt-5.4 standard output tokens"),
        ("audio_output", "provisioned", "gpt-5.4 provisioned audio output tokens"),
    ])
    def test_each_class_has_a_line_a_reader_understands(self, token_class, service_tier, description):
        invoice = invoice_rate(usage=[q("gpt-5.4", service_tier, token_class, hour(0), 1_000)],
                               schedule=DEMO_SCHEDULE, terms=ContractTerms())

        assert [line.description for line in invoice.lines] == [description]

    def test_lines_follow_the_ledger_order_of_classes_within_a_model_and_service_tier(self):
        usage = [q("gpt-5.4", "standard", cls, hour(0), 1_000) for cls in reversed(TOKEN_CLASSES)]

        invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=ContractTerms())

        assert [line.token_class for line in invoice.lines] == list(TOKEN_CLASSES)

    def test_bands_read_in_the_order_they_fill(self):
        terms = ContractTerms(volume_tiers={FRONTIER_INPUT: BANDS})
        one_stretch = [q("gpt-5.4", "standard", "input", hour(0), 5_000)]
        stretches = [q("gpt-5.4", "standard", "input", hour(0), 800), q("gpt-5.4", "standard", "input", hour(7), 4_200)]

        for usage in (one_stretch, stretches):
            invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=terms)

            assert [(str(l.unit_price), l.tokens) for l in invoice.lines] == [("10", 1_000), ("5", 2_000), ("1", 2_000)]

    def test_bands_on_a_newer_class_walk_its_own_tokens_only(self):
        long_writes = ("frontier", "flex", "cache_write_long")
        terms = ContractTerms(volume_tiers={long_writes: (Band(1_000_000, Decimal("2.50")),
                                                          Band(None, Decimal("2.00")))})
        usage = [q("gpt-5.4", "flex", "cache_write_long", hour(1), 700_000),
                 q("gpt-5.4", "flex", "input", hour(1), 5_000_000),  # another key: book price, not banded
                 q("gpt-5.4", "flex", "cache_write_long", hour(9), 800_001),
                 q("gpt-5.4", "standard", "cache_write_long", hour(9), 100_000)]  # another tier: book price

        invoice = invoice_rate(usage=usage, schedule=DEMO_SCHEDULE, terms=terms)

        assert {(l.service_tier, l.token_class, str(l.unit_price), l.tokens, str(l.amount)) for l in invoice.lines} == {
            ("flex", "cache_write_long", "2.50", 1_000_000, "2.50"),
            ("flex", "cache_write_long", "2.00", 500_001, "1.00"),  # 1.000002
            ("flex", "input", "1.250", 5_000_000, "6.25"),
            ("standard", "cache_write_long", "5.00", 100_000, "0.50"),
        }

    def test_a_newer_class_or_tier_the_book_leaves_unpriced_is_missing_not_free(self):
        no_audio = PriceBookVersion(effective_from=datetime(2026, 1, 1, tzinfo=UTC),
                                    prices={k: v for k, v in DEMO_BOOK.prices.items()
                                            if k[2] != "audio_output" and k[1] != "flex"})
        schedule = PriceSchedule(tiers=DEMO_TIERS, books=(no_audio,))

        for usage in (q("gpt-5.4", "standard", "audio_output", hour(0), 1), q("gpt-5.4", "flex", "input", hour(0), 1)):
            with pytest.raises(PriceMissing):
                invoice_rate(usage=[usage], schedule=schedule, terms=ContractTerms())


# A month of one frontier customer in every class and three service tiers, with a contract that
# overrides audio output and bands 5-minute cache writes; every amount computed by hand below.
EVERY_CLASS_USAGE = [
    q("gpt-5.4", "standard", "input", datetime(2026, 3, 2, tzinfo=UTC), 1_000_001),
    q("gpt-5.4", "standard", "cached_input", datetime(2026, 3, 2, tzinfo=UTC), 4_000_000),
    q("gpt-5.4", "standard", "cache_write", datetime(2026, 3, 2, tzinfo=UTC), 1_500_000),
    q("gpt-5.4", "standard", "cache_write", datetime(2026, 3, 20, tzinfo=UTC), 900_000),
    q("gpt-5.4", "standard", "cache_write_long", datetime(2026, 3, 3, tzinfo=UTC), 333_333),
    q("gpt-5.4", "standard", "audio_input", datetime(2026, 3, 4, tzinfo=UTC), 12_345),
    q("gpt-5.4", "standard", "output", datetime(2026, 3, 4, tzinfo=UTC), 250_000),
    q("gpt-5.4", "standard", "audio_output", datetime(2026, 3, 4, tzinfo=UTC), 40_000),
    q("gpt-5.4", "flex", "input", datetime(2026, 3, 5, tzinfo=UTC), 2_000_000),
    q("gpt-5.4", "flex", "output", datetime(2026, 3, 5, tzinfo=UTC), 100_001),
    q("gpt-5.4", "provisioned", "output", datetime(2026, 3, 6, tzinfo=UTC), 9_000_000),
]
EVERY_CLASS_TERMS = ContractTerms(
    unit_price_overrides={("frontier", "standard", "audio_output"): Decimal("48.00")},
    volume_tiers={("frontier", "standard", "cache_write"): (Band(2_000_000, Decimal("3.125")),
                                                            Band(None, Decimal("2.50")))},
)


class TestEveryClassWorkedExample:
    def test_amounts_to_the_cent(self):
        invoice = invoice_rate(usage=list(reversed(EVERY_CLASS_USAGE)), schedule=DEMO_SCHEDULE, terms=EVERY_CLASS_TERMS)

        assert [(l.service_tier, l.token_class, l.tokens, str(l.unit_price), str(l.amount)) for l in invoice.lines] == [
            ("flex", "input", 2_000_000, "1.250", "2.50"),  # half of 2.50
            ("flex", "output", 100_001, "7.500", "0.75"),  # 0.7500075
            ("provisioned", "output", 9_000_000, "0.00", "0.00"),  # the reservation pays
            ("standard", "input", 1_000_001, "2.50", "2.50"),  # 2.5000025
            ("standard", "cached_input", 4_000_000, "0.25", "1.00"),
            ("standard", "cache_write", 2_000_000, "3.125", "6.25"),  # the first band, filled from March 2
            ("standard", "cache_write", 400_000, "2.50", "1.00"),  # the rest of 2,400,000, served on March 20
            ("standard", "cache_write_long", 333_333, "5.00", "1.67"),  # 1.666665
            ("standard", "audio_input", 12_345, "20.00", "0.25"),  # 0.2469
            ("standard", "output", 250_000, "15.00", "3.75"),
            ("standard", "audio_output", 40_000, "48.00", "1.92"),  # the contract's price
        ]
        assert str(invoice.total) == "21.59"
        # usage_amount prices at unit prices in force, bands aside: 2,400,000 × 3.125 = 7.50
        assert str(usage_amount(usage=EVERY_CLASS_USAGE, schedule=DEMO_SCHEDULE, terms=EVERY_CLASS_TERMS)) == "21.84"
