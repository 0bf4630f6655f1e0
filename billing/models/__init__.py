"""Billing's tables: prices and contracts (pricing), reservations and rentals (capacity),
invoices, credit and debit notes (invoices), budgets and live spend (spend), billing runs, webhooks and the finance audit
log (operations)."""

from billing.models.capacity import Rental, Reservation
from billing.models.invoices import (
    BilledUsage, CreditNote, DebitNote, DocumentCounter, Invoice, InvoiceLine, Rerating,
)
from billing.models.operations import AuditEntry, BillingRun, BillingRunChunk, WebhookDelivery, WebhookEndpoint
from billing.models.spend import Budget, Spend, SpendAlert
from billing.models.pricing import (
    Contract, ContractPrice, ContractVolumeBand, CreditEntry, Price, PriceBook, TokenClass, TstzRange, UnitPrice,
)

__all__ = [
    "AuditEntry", "BilledUsage", "Budget", "Spend", "SpendAlert", "BillingRun", "BillingRunChunk", "Contract", "ContractPrice", "ContractVolumeBand", "CreditEntry",
    "CreditNote", "DebitNote", "DocumentCounter", "Invoice", "InvoiceLine", "Price", "PriceBook", "Rental", "Rerating", "Reservation",
    "TokenClass", "TstzRange",
    "UnitPrice", "WebhookDelivery", "WebhookEndpoint",
]
