"""The invoice lifecycle (DESIGN.md §3): drafts recomputed on every run, finalization
with a gapless number and a usage snapshot, paid and void, credit notes.

Locks are taken customer row first, then invoice rows, in primary-key order.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.models import BilledUsage, CreditEntry, CreditNote, DocumentCounter, Invoice, InvoiceLine
from billing.rating import PriceMissing, RatedInvoice
from billing.selectors import PeriodUsage, month_bounds, period_rate, period_usage
from billing.services.audit import audit_record
from billing.services.webhooks import webhook_event_publish
from config.api import DomainError
from metering.models import Customer


class InvoiceStateConflict(DomainError):
    code = "invoice_state_conflict"
    status = 409
    title = "The invoice's status does not allow this"


class CreditNoteTooLarge(DomainError):
    code = "credit_note_exceeds_invoice"
    status = 422
    title = "Credit notes would exceed the invoice total"


class CreditNoteInvalid(DomainError):
    code = "credit_note_invalid"
    status = 422
    title = "A credit note needs a positive amount and a reason"


class InvoiceUnpriced(DomainError):
    code = "invoice_unpriced"
    status = 422
    title = "Usage without a price"


def _rate(**kwargs):
    """period_rate, with missing prices as a business-rule error rather than a crash."""
    try:
        return period_rate(**kwargs)
    except PriceMissing as exc:
        raise InvoiceUnpriced(f"{exc} Publish a price book that covers it.") from exc


def period_start_of(period: date) -> datetime:
    return datetime(period.year, period.month, 1, tzinfo=UTC)


def invoice_snapshot(invoice: Invoice) -> dict:
    """What the audit log records of an invoice."""
    return {"status": invoice.status, "number": invoice.number, "total": f"{invoice.total:.2f}",
            "paid_at": invoice.paid_at.isoformat() if invoice.paid_at else None,
            "voided_at": invoice.voided_at.isoformat() if invoice.voided_at else None}


def document_number_next(*, prefix: str, year: int) -> str:
    """The next gapless number, e.g. INV-2026-000042. Call inside the issuing transaction:
    the counter row stays locked until it commits, so numbers follow commit order."""
    DocumentCounter.objects.get_or_create(prefix=prefix, year=year)
    counter = DocumentCounter.objects.select_for_update().get(prefix=prefix, year=year)
    counter.last += 1
    counter.save(update_fields=["last"])
    return f"{prefix}-{year}-{counter.last:06d}"


def _lines_write(invoice: Invoice, rated: RatedInvoice) -> None:
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=invoice, position=position, kind=line.kind, description=line.description,
                    model=line.model, service_tier=line.service_tier, token_class=line.token_class,
                    tokens=line.tokens, unit_price=line.unit_price, amount=line.amount, usage_period=line.period)
        for position, line in enumerate(rated.lines, start=1)
    )
    invoice.subtotal, invoice.total = rated.subtotal, rated.total


def _live_invoice_locked(customer: Customer, period: date, *, as_of: datetime) -> Invoice:
    """The customer's live invoice of the period, locked; a new draft when there is none."""
    invoice = Invoice.objects.select_for_update().filter(customer=customer, period=period).exclude(
        status=Invoice.Status.VOID).first()
    if invoice is None:
        try:
            with transaction.atomic():
                invoice = Invoice.objects.create(customer=customer, period=period, currency=customer.currency,
                                                 computed_at=as_of)
        except IntegrityError:  # another run created it first: take that one
            invoice = Invoice.objects.select_for_update().get(customer=customer, period=period,
                                                              status=Invoice.Status.DRAFT)
    return invoice


@transaction.atomic
def invoice_drafts_refresh(*, customer_ids: list[str], period: date, as_of: datetime) -> list[Invoice]:
    """Recompute the drafts of a period from the ledger. Customers with nothing to bill get
    no invoice; an invoice already finalized is left as it is. Safe to run twice, or twice
    at once: the same drafts come out."""
    start, end = month_bounds(period_start_of(period))
    customers = list(Customer.objects.select_for_update().filter(customer_id__in=customer_ids).order_by("pk"))
    rated_by_customer = _rate(customer_ids=[c.customer_id for c in customers], start=start, end=end)
    drafts = []
    for customer in customers:
        rated = rated_by_customer.get(customer.customer_id)
        if rated is None or not rated.lines:
            continue
        invoice = _live_invoice_locked(customer, period, as_of=as_of)
        if invoice.status != Invoice.Status.DRAFT:
            continue
        _lines_write(invoice, rated)
        invoice.computed_at = as_of
        invoice.save(update_fields=["subtotal", "total", "computed_at"])
        drafts.append(invoice)
    return drafts


def _billed_usage_write(invoice: Invoice, usage: PeriodUsage) -> None:
    BilledUsage.objects.bulk_create(
        BilledUsage(invoice=invoice, customer_id=customer_id, model=model, service_tier=service_tier, hour=hour,
                    input_tokens=i, cached_input_tokens=c, output_tokens=o)
        for customer_id, model, service_tier, hour, i, c, o in [*usage.own, *usage.late]
    )


@transaction.atomic
def invoice_finalize(*, invoice_id: int, actor: str, as_of: datetime) -> Invoice:
    """Issue a draft: rate the usage as it stands now, record exactly that usage as billed,
    draw down prepaid credit, and give it the next gapless number."""
    customer_pk = Invoice.objects.values_list("customer_id", flat=True).get(pk=invoice_id)
    customer = Customer.objects.select_for_update().get(pk=customer_pk)  # serializes credit and late usage
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.DRAFT:
        raise InvoiceStateConflict(f"Invoice {invoice} is {invoice.status}; only a draft can be finalized.")
    before = invoice_snapshot(invoice)
    start, end = month_bounds(period_start_of(invoice.period))
    # Rate exactly the usage recorded as billed, so later events show up as late usage.
    usage = period_usage(customer_ids=[customer.customer_id], start=start, end=end)
    rated = _rate(customer_ids=[customer.customer_id], start=start, end=end, usage=usage)[customer.customer_id]
    _lines_write(invoice, rated)
    _billed_usage_write(invoice, usage)
    if rated.credits_applied:
        CreditEntry.objects.create(customer=customer, invoice=invoice, amount=-rated.credits_applied,
                                   reason=f"applied to invoice of {invoice.period:%Y-%m}", created_by=actor,
                                   created_at=as_of)
    invoice.number = document_number_next(prefix="INV", year=as_of.year)
    invoice.status, invoice.issued_at, invoice.computed_at = Invoice.Status.FINALIZED, as_of, as_of
    invoice.due_at = as_of + timedelta(days=settings.BILLING_PAYMENT_TERMS_DAYS)
    invoice.save()
    audit_record(actor=actor, action="invoice.finalize", obj=invoice, before=before, after=invoice_snapshot(invoice),
                 at=as_of)
    _event_send("invoice.finalized", invoice)
    return invoice


def _transition(*, invoice_id: int, to: str, actor: str, as_of: datetime, stamp: str, event: str) -> Invoice:
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.FINALIZED:
        raise InvoiceStateConflict(f"Invoice {invoice} is {invoice.status}; only a finalized invoice can become {to}.")
    before = invoice_snapshot(invoice)
    invoice.status = to
    setattr(invoice, stamp, as_of)
    invoice.save(update_fields=["status", stamp])
    audit_record(actor=actor, action=f"invoice.{to}", obj=invoice, before=before, after=invoice_snapshot(invoice),
                 at=as_of)
    _event_send(event, invoice)
    return invoice


@transaction.atomic
def invoice_mark_paid(*, invoice_id: int, actor: str, as_of: datetime) -> Invoice:
    return _transition(invoice_id=invoice_id, to=Invoice.Status.PAID, actor=actor, as_of=as_of, stamp="paid_at",
                       event="invoice.paid")


@transaction.atomic
def invoice_void(*, invoice_id: int, actor: str, as_of: datetime) -> Invoice:
    """Cancel an issued invoice; prepaid credit it drew is given back to the customer."""
    invoice = _transition(invoice_id=invoice_id, to=Invoice.Status.VOID, actor=actor, as_of=as_of,
                          stamp="voided_at", event="invoice.voided")
    drawn = CreditEntry.objects.filter(invoice=invoice).first()
    if drawn is not None:
        CreditEntry.objects.create(customer=invoice.customer, amount=-drawn.amount, created_by=actor,
                                   reason=f"returned: invoice {invoice.number} voided", created_at=as_of)
    return invoice


@transaction.atomic
def credit_note_issue(*, invoice_id: int, amount: Decimal, reason: str, actor: str, as_of: datetime) -> CreditNote:
    if amount <= 0 or not reason.strip():
        raise CreditNoteInvalid("A credit note needs an amount above zero and a reason.",
                                errors={"amount" if amount <= 0 else "reason": ["Required."]})
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status not in (Invoice.Status.FINALIZED, Invoice.Status.PAID):
        raise InvoiceStateConflict(f"Invoice {invoice} is {invoice.status}; credit notes need a finalized or paid one.")
    credited = sum((note.amount for note in invoice.credit_notes.all()), Decimal(0))
    remaining = invoice.total - credited
    if amount > remaining:
        raise CreditNoteTooLarge(f"At most {remaining:.2f} of {invoice.total:.2f} remains to credit.",
                                 errors={"amount": [f"Must not exceed {remaining:.2f}."]})
    note = CreditNote.objects.create(invoice=invoice, number=document_number_next(prefix="CN", year=as_of.year),
                                     amount=amount, reason=reason, created_by=actor, created_at=as_of)
    audit_record(actor=actor, action="credit_note.issue", obj=note, before=None,
                 after={"invoice": invoice.number, "amount": f"{amount:.2f}", "reason": reason}, at=as_of)
    _event_send("credit_note.issued", note)
    return note


def _event_send(event: str, obj) -> None:
    webhook_event_publish(event=event, payload=document_json(obj))


def document_json(obj) -> dict:
    """The webhook `data` of an invoice or a credit note."""
    if isinstance(obj, CreditNote):
        return {"object": "credit_note", "number": obj.number, "invoice_id": obj.invoice_id,
                "invoice_number": obj.invoice.number, "customer_id": obj.invoice.customer.customer_id,
                "amount": f"{obj.amount:.2f}", "currency": obj.invoice.currency, "reason": obj.reason,
                "created_at": obj.created_at.isoformat()}
    return {"object": "invoice", "id": obj.pk, "number": obj.number, "customer_id": obj.customer.customer_id,
            "period": f"{obj.period:%Y-%m}", "status": obj.status, "currency": obj.currency,
            "subtotal": f"{obj.subtotal:.2f}", "total": f"{obj.total:.2f}",
            "issued_at": obj.issued_at.isoformat() if obj.issued_at else None,
            "due_at": obj.due_at.isoformat() if obj.due_at else None}
