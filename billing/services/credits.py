"""Prepaid credit grants, entries in an append-only ledger."""

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from billing.models import CreditEntry
from metering.models import Customer


@transaction.atomic
def credit_grant(*, customer_id: str, amount: Decimal, reason: str, actor: str, as_of: datetime) -> CreditEntry:
    if amount <= 0:
        raise ValueError("a grant adds credit: the amount must be positive")
    customer = Customer.objects.get(customer_id=customer_id)
    return CreditEntry.objects.create(customer=customer, amount=amount, reason=reason, created_by=actor,
                                      created_at=as_of)
