"""What the rating engine takes and returns."""

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from metering.token_classes import CLASSES as TOKEN_CLASSES  # pure, like this package

# How a usage line names its token class: "gpt-5.4 standard 1-hour cache write tokens".
TOKEN_CLASS_LABELS = {
    "input": "input tokens",
    "cached_input": "cached input tokens",
    "cache_write": "5-minute cache write tokens",
    "cache_write_long": "1-hour cache write tokens",
    "audio_input": "audio input tokens",
    "output": "output tokens",
    "audio_output": "audio output tokens",
}
assert tuple(TOKEN_CLASS_LABELS) == TOKEN_CLASSES, "a label for every priced class, in the ledger's order"
HOUR = timedelta(hours=1)
PriceKey = tuple[str, str, str]  # (model tier, service tier, token class)


class PriceMissing(Exception):
    """Usage that no price book or contract prices."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """Tokens of one class, for one model and service tier, served in [hour, until): one
    hour (until None), or a longer segment over which no tier or price changes."""

    model: str
    service_tier: str
    token_class: str
    hour: datetime
    tokens: int
    until: datetime | None = None

    @property
    def ends_at(self) -> datetime:
        return self.until or self.hour + HOUR


@dataclass(frozen=True, slots=True)
class TierAssignment:
    model: str
    tier: str
    effective_from: datetime


@dataclass(frozen=True, slots=True)
class PriceBookVersion:
    effective_from: datetime
    prices: dict[PriceKey, Decimal]  # USD per 1M tokens


@dataclass(frozen=True, slots=True)
class Band:
    """One band of a graduated schedule: prices the tokens up to `tokens_up_to` (None: the rest)."""

    tokens_up_to: int | None
    unit_price_per_million: Decimal


@dataclass(frozen=True)
class ContractTerms:
    """A customer's contract as it applies to one billing period."""

    discount_percent: Decimal = Decimal(0)
    monthly_minimum: Decimal | None = None
    unit_price_overrides: dict[PriceKey, Decimal] = field(default_factory=dict)
    volume_tiers: dict[PriceKey, tuple[Band, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PriceSchedule:
    """The catalog's tier history and the price book versions, for lookups by instant."""

    tiers: tuple[TierAssignment, ...]
    books: tuple[PriceBookVersion, ...]

    def __post_init__(self):
        by_model: dict[str, list[TierAssignment]] = {}
        for assignment in sorted(self.tiers, key=lambda a: a.effective_from):
            by_model.setdefault(assignment.model, []).append(assignment)
        books = sorted(self.books, key=lambda b: b.effective_from)
        object.__setattr__(self, "_tiers", {m: ([a.effective_from for a in v], v) for m, v in by_model.items()})
        object.__setattr__(self, "_books", ([b.effective_from for b in books], books))

    def boundaries(self, start: datetime, end: datetime) -> list[datetime]:
        """`start` and every instant in (start, end) where a tier or a price may change."""
        changes = [a.effective_from for a in self.tiers] + [b.effective_from for b in self.books]
        return sorted({start, *(c for c in changes if start < c < end)})

    def tier_at(self, model: str, at: datetime) -> str:
        starts, assignments = self._tiers.get(model, ((), ()))
        index = bisect_right(starts, at) - 1
        if index < 0:
            raise PriceMissing(f"Model '{model}' has no tier at {at.isoformat()}.")
        return assignments[index].tier

    def price_at(self, key: PriceKey, at: datetime) -> Decimal:
        starts, books = self._books
        index = bisect_right(starts, at) - 1
        if index < 0 or key not in books[index].prices:
            raise PriceMissing(f"No price for {'/'.join(key)} at {at.isoformat()}.")
        return books[index].prices[key]


@dataclass(frozen=True, slots=True)
class CapacityTerm:
    """Capacity sold by the hour (DESIGN.md §2): a provisioned throughput reservation
    (`units` of `model_tier`) or a cluster rental (`units` = the cluster's accelerators),
    at `unit_hour_price` over [starts_at, ends_at) (ends_at None: open). Terms are on the hour.
    `covered_tokens`: on a rental, the renter's tokens served from the cluster in the period,
    shown on its line and not priced again."""

    kind: str  # reservation | rental
    name: str  # the model tier of a reservation, the cluster of a rental
    units: int
    unit_hour_price: Decimal
    starts_at: datetime
    ends_at: datetime | None
    cluster: str = ""  # a reservation pinned to a cluster
    covered_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Line:
    kind: str  # usage | late_usage | capacity | discount | minimum | credits
    description: str
    amount: Decimal
    model: str = ""
    service_tier: str = ""
    token_class: str = ""
    tokens: int = 0
    unit_price: Decimal | None = None
    period: str = ""  # YYYY-MM of the usage, on late usage lines
    usage_start: datetime | None = None  # [usage_start, usage_end): the stretch of time a usage line prices
    usage_end: datetime | None = None


@dataclass(frozen=True)
class RatedInvoice:
    lines: tuple[Line, ...]

    @property
    def subtotal(self) -> Decimal:
        """Usage, late usage, capacity, discount and commitment true-up: what is owed before credits."""
        return sum((line.amount for line in self.lines if line.kind != "credits"), Decimal(0))

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def credits_applied(self) -> Decimal:
        return -sum((line.amount for line in self.lines if line.kind == "credits"), Decimal(0))
