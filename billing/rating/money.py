"""Decimal money helpers. Rounding happens here and only where DESIGN.md §3 says."""

from decimal import ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")


def round_cents(amount: Decimal) -> Decimal:
    """ROUND_HALF_UP to cents: once per invoice line."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def line_amount(*, tokens: int, unit_price_per_million: Decimal) -> Decimal:
    """DESIGN.md §3: round_half_up(tokens × unit_price / 1,000,000, 0.01)."""
    return round_cents(tokens * unit_price_per_million / MILLION)


def money_text(amount: Decimal | None) -> str | None:
    """An amount as the API writes it: two decimals."""
    return None if amount is None else f"{round_cents(amount):.2f}"


def unit_price_text(price: Decimal | None) -> str | None:
    """A unit price as the API writes it: up to six decimals, at least two (2.50, 0.075)."""
    if price is None:
        return None
    text = f"{price.quantize(Decimal('0.000001'), rounding=ROUND_HALF_UP):f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"
