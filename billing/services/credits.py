"""Prepaid credit grants, entries in an append-only ledger."""

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from billing.models import CreditEntry
from billing.services.audit import audit_record
from billing.services.spend import spends_forget
from metering.models import Customer


@transaction.atomic
def credit_grant(*, customer_id: str, amount: Decimal, reason: str, actor: str, as_of: datetime) -> CreditEntry:
    if amount <= 0:
        raise ValueError("a grant adds credit: the amount must be positive")
    customer = Customer.objects.get(customer_id=customer_id)
    entry = CreditEntry.objects.create(customer=customer, amount=amount, reason=reason, created_by=actor,
                                       created_at=as_of)
    spends_forget(customer_ids=[customer_id], as_of=as_of)
    audit_record(actor=actor, action="credit.grant", obj=entry, before=None, at=as_of,
                 after={"customer": customer_id, "amount": f"{amount:.2f}", "reason": reason})
    return entry
