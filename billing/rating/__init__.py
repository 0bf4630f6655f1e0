"""The rating engine: the one place where money is computed (DESIGN.md §2–§3).

Pure: no Django, no database, no clock. Takes usage quantities (from the hourly
rollups), the catalog's tier history, price book versions and contract terms as
frozen dataclasses; returns priced lines whose total is exactly the sum of lines.
"""

from billing.rating.engine import capacity_hours, capacity_lines, invoice_rate, usage_amount
from billing.rating.money import CENT, MILLION, round_cents
from billing.rating.spend import (
    Balance, BudgetTerms, Spent, balance_of, credit_exhausted, period_spend, thresholds_reached,
)
from billing.rating.types import (
    Band, CapacityTerm, ContractTerms, Line, PriceBookVersion, PriceMissing, PriceSchedule, Quantity, RatedInvoice,
    TierAssignment,
)

__all__ = [
    "Balance", "BudgetTerms", "Spent", "balance_of", "credit_exhausted", "period_spend", "thresholds_reached",
    "Band", "CENT", "CapacityTerm", "ContractTerms", "Line", "MILLION", "PriceBookVersion", "PriceMissing",
    "PriceSchedule", "Quantity", "RatedInvoice", "TierAssignment", "capacity_hours", "capacity_lines", "invoice_rate",
    "round_cents", "usage_amount",
]
