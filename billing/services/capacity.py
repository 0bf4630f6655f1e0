"""Capacity sold by the hour (DESIGN.md §2): provisioned throughput reservations, versioned
like contracts, and cluster rentals.

Rules kept here (the database keeps the overlaps too):
- terms are on the hour, and end after they start (422);
- a month of a term fits an invoice line (422);
- a reservation pinned to a cluster, and a rental, need the cluster in service over the
  whole term (422);
- nothing changes what an invoiced period billed: a term (and the part of an open version
  it closes) may not meet a period the customer has a finalized or paid invoice for (409);
- a customer's reservation versions of one model tier never overlap; a new version closes
  an open one that began earlier (409 for any other overlap); two rentals of one cluster
  never overlap, whoever rents it (409);
- a term only ever ends earlier than it did (`reservation_end`, `rental_end`), never
  inside or before an invoiced period; a longer term is a new version or rental.
"""

from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
from django.db import IntegrityError, transaction
from django.db.models import Q

from billing.models import Invoice, Rental, Reservation
from billing.selectors import month_bounds
from billing.services.audit import audit_record
from billing.services.spend import spends_forget
from config.api import DomainError, is_on_the_hour
from infra_inventory.models import Cluster
from metering.models import Customer
from metering.projections import usage_boundary_add

HOUR = timedelta(hours=1)
MONTH_HOURS_MAX = 744
LINE_AMOUNT_MAX = Decimal(10) ** 11  # a month of it fits an invoice line (12 digits before the cents) with room


class CapacityTermInvalid(DomainError):
    code = "capacity_term_invalid"
    status = 422
    title = "Capacity terms run from an hour to a later hour"


class ClusterOutOfService(DomainError):
    code = "cluster_out_of_service"
    status = 422
    title = "The cluster is not in service over the whole term"


class CapacityPeriodInvoiced(DomainError):
    code = "capacity_period_invoiced"
    status = 409
    title = "The term meets a period already invoiced"


class ReservationOverlap(DomainError):
    code = "reservation_overlap"
    status = 409
    title = "Reservation versions would overlap"


class RentalOverlap(DomainError):
    code = "rental_overlap"
    status = 409
    title = "The cluster is already rented over part of this term"


def _term_check(starts_at: datetime, ends_at: datetime | None) -> None:
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value is not None and not is_on_the_hour(value):
            raise CapacityTermInvalid(f"{name} must be on the hour.", errors={name: ["Must be on the hour (UTC)."]})
    if ends_at is not None and ends_at <= starts_at:
        raise CapacityTermInvalid("The term must end after it starts.",
                                  errors={"ends_at": ["Must be after starts_at."]})


class CapacityTooLarge(DomainError):
    code = "capacity_too_large"
    status = 422
    title = "A month of this term would not fit an invoice"


def _amount_check(units: int, unit_hour_price: Decimal, field: str) -> None:
    if units * MONTH_HOURS_MAX * unit_hour_price >= LINE_AMOUNT_MAX:
        raise CapacityTooLarge(f"A month of {units} × {unit_hour_price} per hour exceeds {LINE_AMOUNT_MAX:,} USD.",
                               errors={field: ["Too large: a month of this term would not fit an invoice."]})


def _in_service_check(cluster: Cluster, starts_at: datetime, ends_at: datetime | None) -> None:
    """In service at the first and the last hour of the term (service is one interval)."""
    last_hour_ok = cluster.in_service_to is None if ends_at is None else cluster.in_service(ends_at - HOUR)
    if not (cluster.in_service(starts_at) and last_hour_ok):
        until = cluster.in_service_to.isoformat() if cluster.in_service_to else "open"
        raise ClusterOutOfService(
            f"Cluster {cluster.name} is in service from {cluster.in_service_from.isoformat()} to {until}, "
            "not over the whole term.", errors={"cluster": ["Not in service over the whole term."]})


def _invoiced_check(customer: Customer, start: datetime, end: datetime | None, *, field: str = "starts_at") -> None:
    """409 when [start, end) meets a period of a finalized or paid invoice of the customer."""
    invoiced = Invoice.objects.filter(customer=customer, status__in=(Invoice.Status.FINALIZED, Invoice.Status.PAID))
    for period in invoiced.values_list("period", flat=True).order_by("period"):
        period_start, period_end = month_bounds(datetime(period.year, period.month, 1, tzinfo=start.tzinfo))
        if period_end > start and (end is None or period_start < end):
            raise CapacityPeriodInvoiced(
                f"The invoice of {period:%Y-%m} is issued: the change would alter what it billed.", errors={field: ["Meets a period already invoiced."]})


def _exclusion_violation(exc: IntegrityError) -> bool:
    return isinstance(exc.__cause__, psycopg.errors.ExclusionViolation)


@transaction.atomic
def reservation_put(*, customer_id: str, model_tier: str, units: int, unit_hour_price: Decimal,
                    starts_at: datetime, ends_at: datetime | None, cluster: str | None, actor: str,
                    as_of: datetime) -> Reservation:
    """A new version of the customer's reservation of `model_tier` from `starts_at`. An
    open-ended version that began earlier is closed there; any other overlap is refused."""
    _term_check(starts_at, ends_at)
    _amount_check(units, unit_hour_price, "units")
    customer = Customer.objects.select_for_update().get(customer_id=customer_id)
    pinned = None
    if cluster:
        pinned = Cluster.objects.get(name=cluster)
        _in_service_check(pinned, starts_at, ends_at)
    versions = Reservation.objects.filter(customer=customer, model_tier=model_tier)
    closing = versions.filter(starts_at__lt=starts_at, ends_at__isnull=True)
    # Closing an open version changes everything after starts_at, not only the new term.
    _invoiced_check(customer, starts_at, None if closing.exists() else ends_at)
    closing.update(ends_at=starts_at)
    clash = versions.filter(Q(ends_at__isnull=True) | Q(ends_at__gt=starts_at))
    if ends_at is not None:
        clash = clash.filter(starts_at__lt=ends_at)
    if first := clash.order_by("starts_at").first():
        raise ReservationOverlap(
            f"The version from {first.starts_at.isoformat()} already covers part of this term.",
            errors={"starts_at": ["Overlaps an existing reservation version."]})
    try:
        with transaction.atomic():
            reservation = Reservation.objects.create(
                customer=customer, model_tier=model_tier, units=units, unit_hour_price=unit_hour_price,
                starts_at=starts_at, ends_at=ends_at, cluster=pinned, created_at=as_of, created_by=actor)
    except IntegrityError as exc:
        if not _exclusion_violation(exc):
            raise
        raise ReservationOverlap("Reservation versions would overlap.") from exc
    spends_forget(customer_ids=[customer_id], as_of=as_of)
    audit_record(actor=actor, action="reservation.put", obj=reservation, before=None, at=as_of, after={
        "customer": customer_id, "model_tier": model_tier, "units": units, "unit_hour_price": f"{unit_hour_price}",
        "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat() if ends_at else None,
        "cluster": cluster or None})
    return reservation


def _rental_edges_add(starts_at: datetime, ends_at: datetime | None) -> None:
    """Usage a rental covers is cut from the rest at its edges (metering's usage segments).
    First in the transaction, before any row lock: the segment table's lock waits for the
    consumers' batches, which may hold customer locks of their own."""
    for edge in (starts_at, ends_at):
        if edge is not None:
            usage_boundary_add(at=edge)


@transaction.atomic
def rental_create(*, customer_id: str, cluster: str, accelerator_hour_price: Decimal, starts_at: datetime,
                  ends_at: datetime | None, actor: str, as_of: datetime) -> Rental:
    """Rent a whole cluster to the customer over [starts_at, ends_at), billing the
    accelerators it has now."""
    _term_check(starts_at, ends_at)
    _rental_edges_add(starts_at, ends_at)
    customer = Customer.objects.select_for_update().get(customer_id=customer_id)
    rented = Cluster.objects.get(name=cluster)
    _amount_check(rented.accelerator_count, accelerator_hour_price, "accelerator_hour_price")
    _in_service_check(rented, starts_at, ends_at)
    _invoiced_check(customer, starts_at, ends_at)
    clash = Rental.objects.filter(cluster=rented).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=starts_at))
    if ends_at is not None:
        clash = clash.filter(starts_at__lt=ends_at)
    if first := clash.select_related("customer").order_by("starts_at").first():
        raise RentalOverlap(f"Cluster {cluster} is rented from {first.starts_at.isoformat()} over part of this term.",
                            errors={"starts_at": ["Overlaps another rental of this cluster."]})
    try:
        with transaction.atomic():  # a concurrent rental of the cluster: the exclusion constraint says no
            rental = Rental.objects.create(
                customer=customer, cluster=rented, accelerator_hour_price=accelerator_hour_price,
                accelerator_count=rented.accelerator_count, starts_at=starts_at, ends_at=ends_at, created_at=as_of,
                created_by=actor)
    except IntegrityError as exc:
        if not _exclusion_violation(exc):
            raise
        raise RentalOverlap(f"Cluster {cluster} is already rented over part of this term.") from exc
    spends_forget(customer_ids=[customer_id], as_of=as_of)
    audit_record(actor=actor, action="rental.create", obj=rental, before=None, at=as_of, after={
        "customer": customer_id, "cluster": cluster, "accelerators": rented.accelerator_count,
        "accelerator_hour_price": f"{accelerator_hour_price}", "starts_at": starts_at.isoformat(),
        "ends_at": ends_at.isoformat() if ends_at else None})
    return rental


class CapacityTermNotEndable(DomainError):
    code = "capacity_term_not_endable"
    status = 422
    title = "The term cannot end there"


def _end_check(term: Reservation | Rental, ends_at: datetime) -> None:
    if not is_on_the_hour(ends_at):
        raise CapacityTermInvalid("ends_at must be on the hour.", errors={"ends_at": ["Must be on the hour (UTC)."]})
    if ends_at <= term.starts_at or (term.ends_at is not None and ends_at >= term.ends_at):
        raise CapacityTermNotEndable(
            "A term ends earlier than it did, after it starts: to extend one, add a new version or rental.",
            errors={"ends_at": ["Must be after starts_at and before the current end."]})


def _term_end(model, *, term_id: int, ends_at: datetime, actor: str, as_of: datetime):
    """End a reservation version or a rental earlier (an open one, typically): the hours it
    no longer covers may not meet a period of the customer already invoiced."""
    if model is Rental:
        _rental_edges_add(ends_at, None)
    customer_pk = model.objects.values_list("customer_id", flat=True).get(pk=term_id)
    customer = Customer.objects.select_for_update().get(pk=customer_pk)
    term = model.objects.select_for_update().get(pk=term_id)
    _end_check(term, ends_at)
    _invoiced_check(customer, ends_at, term.ends_at, field="ends_at")
    before = {"ends_at": term.ends_at.isoformat() if term.ends_at else None}
    term.ends_at = ends_at
    term.save(update_fields=["ends_at"])
    spends_forget(customer_ids=[customer.customer_id], as_of=as_of)
    audit_record(actor=actor, action=f"{model._meta.model_name}.end", obj=term, before=before, at=as_of,
                 after={"ends_at": ends_at.isoformat()})
    return term


@transaction.atomic
def reservation_end(*, reservation_id: int, ends_at: datetime, actor: str, as_of: datetime) -> Reservation:
    return _term_end(Reservation, term_id=reservation_id, ends_at=ends_at, actor=actor, as_of=as_of)


@transaction.atomic
def rental_end(*, rental_id: int, ends_at: datetime, actor: str, as_of: datetime) -> Rental:
    return _term_end(Rental, term_id=rental_id, ends_at=ends_at, actor=actor, as_of=as_of)
