"""Re-rating (DESIGN.md §6): what an invoice billed against what its period bills now,
line key by line key. Pure.

A line key is (kind, model, service tier, token class, period of the usage): the lines
of one key (graduated bands, a price change within the period) are summed, so a key
compares its tokens and amounts whatever the bands. Discount and commitment true-up are
keys of their own; prepaid credits are not re-rated (the credit drawn at finalization
stays drawn), so the difference is the change in what was owed before credits.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from billing.rating.types import Line

COMPARED_KINDS = ("usage", "late_usage", "capacity", "discount", "minimum")


@dataclass(frozen=True, slots=True)
class KeyTotal:
    """The tokens and amount billed under one line key."""

    kind: str
    model: str
    service_tier: str
    token_class: str
    period: str
    tokens: int
    amount: Decimal

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.kind, self.model, self.service_tier, self.token_class, self.period)

    @classmethod
    def of_line(cls, line: Line, *, period: str) -> "KeyTotal":
        """A rated line under its key; a usage line's period is the invoice's own."""
        return cls(line.kind, line.model, line.service_tier, line.token_class, line.period or period, line.tokens,
                   line.amount)


@dataclass(frozen=True, slots=True)
class KeyDifference:
    kind: str
    model: str
    service_tier: str
    token_class: str
    period: str
    billed_tokens: int
    tokens: int
    billed_amount: Decimal
    amount: Decimal

    @property
    def difference(self) -> Decimal:
        return self.amount - self.billed_amount


def _summed(totals: Iterable[KeyTotal]) -> dict[tuple, KeyTotal]:
    summed: dict[tuple, KeyTotal] = {}
    for total in totals:
        if total.kind not in COMPARED_KINDS:
            continue
        if (kept := summed.get(total.key)) is None:
            summed[total.key] = total
        else:
            summed[total.key] = KeyTotal(*total.key, kept.tokens + total.tokens, kept.amount + total.amount)
    return summed


def keys_compare(*, billed: Iterable[KeyTotal], now: Iterable[KeyTotal]) -> tuple[KeyDifference, ...]:
    """Every key whose tokens or amount changed, in the order of the lines now, then the
    keys that are no longer billed in the order they were."""
    before, after = _summed(billed), _summed(now)
    differences = []
    for key in [*after, *(k for k in before if k not in after)]:
        was, kept = before.get(key), after.get(key)
        billed_tokens, billed_amount = (was.tokens, was.amount) if was else (0, Decimal(0))
        tokens, amount = (kept.tokens, kept.amount) if kept else (0, Decimal(0))
        if (billed_tokens, billed_amount) != (tokens, amount):
            differences.append(KeyDifference(*key, billed_tokens, tokens, billed_amount, amount))
    return tuple(differences)


def difference_total(differences: Iterable[KeyDifference]) -> Decimal:
    """What the customer owes more (positive) or was over-billed (negative): exact, a sum
    of differences of rounded lines."""
    return sum((d.difference for d in differences), Decimal("0.00"))
