"""Customer contracts: each change is a new effective-dated version."""

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import psycopg
from django.db import IntegrityError, transaction
from django.db.models import Q

from billing.models import Contract, ContractPrice, ContractVolumeBand
from billing.services.audit import audit_record
from billing.services.spend import spends_forget
from config.api import DomainError
from metering.models import Customer


class ContractOverlap(DomainError):
    code = "contract_overlap"
    status = 409
    title = "Contract versions would overlap"


@transaction.atomic
def contract_put(*, customer_id: str, effective_from: datetime, effective_to: datetime | None,
                 discount_percent: Decimal, monthly_minimum: Decimal | None,
                 unit_price_overrides: Iterable[dict], volume_tiers: Iterable[dict], actor: str) -> Contract:
    """Start a new version at `effective_from`. An open-ended version that began earlier is
    closed there; any other overlap is refused (and the database would refuse it too)."""
    customer = Customer.objects.select_for_update().get(customer_id=customer_id)
    Contract.objects.filter(customer=customer, effective_from__lt=effective_from, effective_to__isnull=True).update(
        effective_to=effective_from)
    clash = Contract.objects.filter(customer=customer).filter(
        Q(effective_to__isnull=True) | Q(effective_to__gt=effective_from))
    if effective_to is not None:
        clash = clash.filter(effective_from__lt=effective_to)
    if first := clash.order_by("effective_from").first():
        raise ContractOverlap(
            f"The version from {first.effective_from.isoformat()} already covers part of this period.",
            errors={"effective_from": ["Overlaps an existing contract version."]})
    try:
        with transaction.atomic():
            contract = Contract.objects.create(
                customer=customer, effective_from=effective_from, effective_to=effective_to,
                discount_percent=discount_percent, monthly_minimum=monthly_minimum, created_by=actor)
    except IntegrityError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.ExclusionViolation):
            raise
        raise ContractOverlap("Contract versions would overlap.") from exc
    ContractPrice.objects.bulk_create(ContractPrice(contract=contract, **p) for p in unit_price_overrides)
    audit_record(actor=actor, action="contract.put", obj=contract, before=None, at=contract.created_at, after={
        "customer": customer_id, "effective_from": effective_from.isoformat(),
        "effective_to": effective_to.isoformat() if effective_to else None,
        "discount_percent": f"{discount_percent}", "monthly_minimum": f"{monthly_minimum}"})
    ContractVolumeBand.objects.bulk_create(
        ContractVolumeBand(contract=contract, model_tier=t["model_tier"], service_tier=t["service_tier"],
                           token_class=t["token_class"], tokens_up_to=band["up_to"], unit_price=band["unit_price"])
        for t in volume_tiers for band in t["bands"]
    )
    spends_forget(customer_ids=[customer_id], as_of=contract.created_at)
    return contract
