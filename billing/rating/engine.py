"""Usage quantities → priced invoice lines, exactly as DESIGN.md §3 orders them."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.rating.money import line_amount, round_cents, unit_price_text
from billing.rating.types import (
    HOUR, TOKEN_CLASS_LABELS, TOKEN_CLASSES, Band, CapacityTerm, ContractTerms, Line, PriceKey, PriceSchedule,
    Quantity, RatedInvoice,
)

LineKey = tuple[str, str, str, Decimal, str]  # model, service tier, class, unit price, period


@dataclass(slots=True)
class _Tokens:
    """Tokens of one line and the stretch of time they were served in: from the first
    quantity's start to the last one's end (a price that comes back after a change makes
    one line whose stretch spans the change)."""

    count: int = 0
    start: datetime | None = None
    end: datetime | None = None

    def add(self, q: Quantity, count: int) -> None:
        self.count += count
        self.start = q.hour if self.start is None else min(self.start, q.hour)
        self.end = q.ends_at if self.end is None else max(self.end, q.ends_at)


def _unit_tokens(quantities: Iterable[Quantity], *, schedule: PriceSchedule, terms: ContractTerms,
                 graduated: bool, late: bool) -> dict[LineKey, _Tokens]:
    """Tokens per (model, service tier, class, unit price[, period]): summed first, priced later."""
    tokens: dict[LineKey, _Tokens] = defaultdict(_Tokens)
    banded: dict[PriceKey, list[Quantity]] = defaultdict(list)
    for q in quantities:
        if q.tokens == 0:
            continue
        key = (schedule.tier_at(q.model, q.hour), q.service_tier, q.token_class)
        period = f"{q.hour:%Y-%m}" if late else ""
        if graduated and key in terms.volume_tiers:
            banded[key].append(q)
        elif key in terms.unit_price_overrides:
            tokens[(q.model, q.service_tier, q.token_class, terms.unit_price_overrides[key], period)].add(q, q.tokens)
        else:
            tokens[(q.model, q.service_tier, q.token_class, schedule.price_at(key, q.hour), period)].add(q, q.tokens)
    for key, items in banded.items():
        for q, band_tokens, price in _graduated_split(items, terms.volume_tiers[key]):
            tokens[(q.model, q.service_tier, q.token_class, price, "")].add(q, band_tokens)
    return tokens


def _graduated_split(quantities: list[Quantity], bands: tuple[Band, ...]):
    """Walk the period's tokens in the order they were served (by hour or segment, then
    model); each band prices only the tokens inside it. Yields (quantity, tokens, price)."""
    used = 0
    for q in sorted(quantities, key=lambda q: (q.hour, q.model)):
        remaining = q.tokens
        for band in bands:
            if remaining == 0:
                break
            room = remaining if band.tokens_up_to is None else max(band.tokens_up_to - used, 0)
            take = min(room, remaining)
            if take:
                yield q, take, band.unit_price_per_million
                used += take
                remaining -= take
        if remaining:
            raise ValueError("volume tiers must end with an open-ended band")


def _line_order(item: tuple[LineKey, _Tokens]) -> tuple:
    """Lines by model and service tier, then by token class in the ledger's order (input,
    its cached, cache-written and audio parts; then output and its audio part), then the
    lines of one class as they were served: by period and stretch of time (a price change
    reads in date order, graduated bands in the order they fill: the first one ends first).
    Bands filled within one stretch tie there; the higher price first, as volume bands
    usually fall."""
    (model, service_tier, token_class, price, period), used = item
    return model, service_tier, TOKEN_CLASSES.index(token_class), period, used.start, used.end, -price


def _usage_lines(tokens: dict[LineKey, _Tokens], *, kind: str) -> list[Line]:
    lines = []
    for (model, service_tier, token_class, price, period), used in sorted(tokens.items(), key=_line_order):
        label = f"{model} {service_tier} {TOKEN_CLASS_LABELS[token_class]}"
        lines.append(Line(
            kind=kind, description=label + (f" (usage of {period})" if period else ""),
            amount=line_amount(tokens=used.count, unit_price_per_million=price), model=model,
            service_tier=service_tier, token_class=token_class, tokens=used.count, unit_price=price, period=period,
            usage_start=used.start, usage_end=used.end,
        ))
    return lines


def capacity_overlap(term: CapacityTerm, *, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The half-open overlap of a term with [start, end), or None when they do not meet."""
    lower = max(term.starts_at, start)
    upper = end if term.ends_at is None else min(term.ends_at, end)
    return (lower, upper) if lower < upper else None


def capacity_hours(term: CapacityTerm, *, start: datetime, end: datetime) -> int:
    """Whole hours of the term within [start, end): terms and periods are on the hour."""
    overlap = capacity_overlap(term, start=start, end=end)
    if overlap is None:
        return 0
    hours, rest = divmod(overlap[1] - overlap[0], HOUR)
    if rest:
        raise ValueError("capacity terms and periods are on the hour")
    return hours


def _capacity_line(term: CapacityTerm, *, start: datetime, end: datetime) -> Line | None:
    overlap = capacity_overlap(term, start=start, end=end)
    if overlap is None:
        return None
    hours = capacity_hours(term, start=start, end=end)
    price = unit_price_text(term.unit_hour_price)
    if term.kind == "reservation":
        pinned = f" on {term.cluster}" if term.cluster else ""
        description = (f"Provisioned throughput {term.name}{pinned}: {term.units} units × {hours} h "
                       f"× {price} per unit-hour")
    else:
        covered = f"; covers {term.covered_tokens:,} tokens served on it" if term.covered_tokens else ""
        description = (f"Dedicated cluster {term.name}: {term.units} accelerators × {hours} h "
                       f"× {price} per accelerator-hour{covered}")
    return Line(kind="capacity", description=description[:200],
                amount=round_cents(term.units * hours * term.unit_hour_price), unit_price=term.unit_hour_price,
                usage_start=overlap[0], usage_end=overlap[1])


def capacity_lines(terms: Iterable[CapacityTerm], *, start: datetime, end: datetime) -> list[Line]:
    """DESIGN.md §3: one line per reservation or rental overlapping [start, end):
    round_half_up(units × hours in the period × unit-hour price, 0.01); reservations first,
    then rentals, each by name and start."""
    ordered = sorted(terms, key=lambda t: (t.kind != "reservation", t.name, t.starts_at))
    return [line for term in ordered if (line := _capacity_line(term, start=start, end=end)) is not None]


def invoice_rate(*, usage: Iterable[Quantity], schedule: PriceSchedule, terms: ContractTerms,
                 late_usage: Iterable[Quantity] = (), credit_balance: Decimal = Decimal(0),
                 capacity: Iterable[CapacityTerm] = (), period: tuple[datetime, datetime] | None = None
                 ) -> RatedInvoice:
    """Lines in DESIGN.md §3 order: usage, late usage, capacity (reservations and rentals
    over `period`, [start, end)), discount (of usage and late usage only), commitment
    true-up and credits (over the subtotal, capacity included)."""
    lines = _usage_lines(_unit_tokens(usage, schedule=schedule, terms=terms, graduated=True, late=False), kind="usage")
    lines += _usage_lines(_unit_tokens(late_usage, schedule=schedule, terms=terms, graduated=False, late=True),
                          kind="late_usage")
    usage_total = sum((line.amount for line in lines), Decimal(0))
    capacity = tuple(capacity)
    if capacity:
        if period is None:
            raise ValueError("capacity is rated over a period")
        lines += capacity_lines(capacity, start=period[0], end=period[1])
    if terms.discount_percent and usage_total:
        discount = -round_cents(usage_total * terms.discount_percent / 100)
        lines.append(Line(kind="discount", description=f"Discount {terms.discount_percent.normalize():f}%",
                          amount=discount))
    subtotal = sum((line.amount for line in lines), Decimal(0))
    if terms.monthly_minimum is not None and subtotal < terms.monthly_minimum:
        lines.append(Line(kind="minimum", description=f"Monthly minimum commitment {terms.monthly_minimum:f}",
                          amount=terms.monthly_minimum - subtotal))
        subtotal = terms.monthly_minimum
    applied = min(credit_balance, subtotal) if subtotal > 0 else Decimal(0)
    if applied > 0:
        lines.append(Line(kind="credits", description="Prepaid credits applied", amount=-applied))
    return RatedInvoice(lines=tuple(lines))


def usage_amount(*, usage: Iterable[Quantity], schedule: PriceSchedule, terms: ContractTerms) -> Decimal:
    """What usage costs at the unit prices in force (book and contract overrides), before
    discounts, minimums, credits and volume tiers: one rounded line per unit price."""
    tokens = _unit_tokens(usage, schedule=schedule, terms=terms, graduated=False, late=False)
    return sum((line.amount for line in _usage_lines(tokens, kind="usage")), Decimal(0))
