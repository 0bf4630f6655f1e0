"""The invoice lifecycle (DESIGN.md §3): drafts recomputed on every run, finalization
with a gapless number and a usage snapshot, paid and void, credit notes.

Locks are taken customer row first, then invoice rows, in primary-key order.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from billing.models import BilledUsage, CreditEntry, CreditNote, DebitNote, DocumentCounter, Invoice, InvoiceLine
from billing.rating import PriceMissing, RatedInvoice
from billing.selectors import month_bounds, period_rate, period_usage
from billing.services.audit import audit_record
from billing.services.spend import spends_forget
from billing.services.webhooks import webhook_event_publish
from config.api import DomainError
from metering import selectors as metering_selectors
from metering.models import Customer
from metering.token_classes import FIELDS as TOKEN_FIELDS


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


def period_rate_priced(**kwargs):
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


def document_numbers_next(*, prefix: str, year: int, count: int = 1) -> list[str]:
    """The next `count` gapless numbers, e.g. INV-2026-000042. Call inside the issuing
    transaction: the counter row stays locked until it commits, so numbers follow commit order."""
    DocumentCounter.objects.get_or_create(prefix=prefix, year=year)
    counter = DocumentCounter.objects.select_for_update().get(prefix=prefix, year=year)
    first, counter.last = counter.last + 1, counter.last + count
    counter.save(update_fields=["last"])
    return [f"{prefix}-{year}-{n:06d}" for n in range(first, counter.last + 1)]


def _line_rows(invoice: Invoice, rated: RatedInvoice) -> list[InvoiceLine]:
    return [InvoiceLine(invoice=invoice, position=position, kind=line.kind, description=line.description,
                        model=line.model, service_tier=line.service_tier, token_class=line.token_class,
                        tokens=line.tokens, unit_price=line.unit_price, amount=line.amount, usage_period=line.period,
                        usage_start=line.usage_start, usage_end=line.usage_end)
            for position, line in enumerate(rated.lines, start=1)]


def _lines_replace(invoices: list[Invoice], rated: dict[str, RatedInvoice]) -> None:
    """Replace the lines of draft invoices (customer loaded) by their rating, in bulk."""
    InvoiceLine.objects.filter(invoice__in=invoices).delete()
    lines = []
    for invoice in invoices:
        rating = rated[invoice.customer.customer_id]
        lines.extend(_line_rows(invoice, rating))
        invoice.subtotal, invoice.total = rating.subtotal, rating.total
    InvoiceLine.objects.bulk_create(lines, batch_size=5000)


def _live_invoices_locked(customers: list[Customer], period: date, *, as_of: datetime) -> dict[int, Invoice]:
    """The live invoice of each customer for the period, locked; new drafts where missing.
    The caller holds the customers' row locks, so no other run creates them meanwhile (and
    the partial unique constraint would refuse a second live invoice if one tried)."""
    live = {i.customer_id: i for i in Invoice.objects.select_for_update().filter(
        customer__in=customers, period=period).exclude(status=Invoice.Status.VOID).order_by("pk")}
    live.update((i.customer_id, i) for i in Invoice.objects.bulk_create(
        Invoice(customer=c, period=period, currency=c.currency, computed_at=as_of)
        for c in customers if c.pk not in live))
    for customer in customers:
        live[customer.pk].customer = customer
    return live


@transaction.atomic
def invoice_drafts_refresh(*, customer_ids: list[str], period: date, as_of: datetime) -> list[Invoice]:
    """Recompute the drafts of a period from the ledger, for many customers at once.
    Customers with nothing to bill get no invoice; an invoice already finalized is left
    as it is. Safe to run twice, or twice at once: the same drafts come out."""
    start, end = month_bounds(period_start_of(period))
    customers = list(Customer.objects.select_for_update().filter(customer_id__in=customer_ids).order_by("pk"))
    rated = period_rate_priced(customer_ids=[c.customer_id for c in customers], start=start, end=end)
    billable = [c for c in customers if rated.get(c.customer_id) is not None and rated[c.customer_id].lines]
    live = _live_invoices_locked(billable, period, as_of=as_of)
    drafts = [live[c.pk] for c in billable if live[c.pk].status == Invoice.Status.DRAFT]
    _lines_replace(drafts, rated)
    for invoice in drafts:
        invoice.computed_at = as_of
    Invoice.objects.bulk_update(drafts, ["subtotal", "total", "computed_at"], batch_size=500)
    return drafts


def _issue(invoices: list[Invoice], *, period: date, actor: str, as_of: datetime) -> None:
    """Finalize locked drafts of one period (customers locked and loaded) together: rate the
    usage as it stands now, record exactly that usage as billed, and the last usage
    adjustment it includes (the customer locks keep new ones out meanwhile), draw down
    prepaid credit, and take gapless numbers last, so the counter row is held as briefly
    as possible."""
    customer_ids = [invoice.customer.customer_id for invoice in invoices]
    start, end = month_bounds(period_start_of(period))
    usage = period_usage(customer_ids=customer_ids, start=start, end=end)
    rated = period_rate_priced(customer_ids=customer_ids, start=start, end=end, usage=usage)
    before = {invoice.pk: invoice_snapshot(invoice) for invoice in invoices}
    _lines_replace(invoices, rated)
    by_customer = {invoice.customer.customer_id: invoice for invoice in invoices}
    BilledUsage.objects.bulk_create(
        (BilledUsage(invoice=by_customer[c], customer_id=c, model=m, service_tier=t, hour=h,
                     **dict(zip(TOKEN_FIELDS, tokens))) for c, m, t, h, *tokens in [*usage.own, *usage.late]),
        batch_size=5000)
    drawn = {invoice: rated[invoice.customer.customer_id].credits_applied for invoice in invoices}
    CreditEntry.objects.bulk_create(
        CreditEntry(customer=invoice.customer, invoice=invoice, amount=-amount, created_by=actor, created_at=as_of,
                    reason=f"applied to invoice of {invoice.period:%Y-%m}")
        for invoice, amount in drawn.items() if amount)
    spends_forget(customer_ids=customer_ids, as_of=as_of)  # the credit drawn is no longer there to spend
    adjusted = metering_selectors.adjustments_last_ids(customer_ids=customer_ids)
    numbers = document_numbers_next(prefix="INV", year=as_of.year, count=len(invoices))
    due_at = as_of + timedelta(days=settings.BILLING_PAYMENT_TERMS_DAYS)
    for invoice, number in zip(invoices, numbers):
        invoice.number, invoice.status = number, Invoice.Status.FINALIZED
        invoice.issued_at, invoice.computed_at, invoice.due_at = as_of, as_of, due_at
        invoice.adjustments_through = adjusted.get(invoice.customer.customer_id, 0)
    Invoice.objects.bulk_update(invoices, ["subtotal", "total", "number", "status", "issued_at", "computed_at",
                                           "due_at", "adjustments_through"], batch_size=500)
    for invoice in invoices:
        audit_record(actor=actor, action="invoice.finalize", obj=invoice, before=before[invoice.pk],
                     after=invoice_snapshot(invoice), at=as_of)
        document_event_send("invoice.finalized", invoice)


@transaction.atomic
def invoice_finalize(*, invoice_id: int, actor: str, as_of: datetime) -> Invoice:
    """Issue one draft (see `_issue`)."""
    customer_pk = Invoice.objects.values_list("customer_id", flat=True).get(pk=invoice_id)
    customer = Customer.objects.select_for_update().get(pk=customer_pk)  # serializes credit and late usage
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != Invoice.Status.DRAFT:
        raise InvoiceStateConflict(f"Invoice {invoice} is {invoice.status}; only a draft can be finalized.")
    invoice.customer = customer
    _issue([invoice], period=invoice.period, actor=actor, as_of=as_of)
    return invoice


@transaction.atomic
def invoices_issue(*, customer_ids: list[str], period: date, actor: str, as_of: datetime) -> list[Invoice]:
    """Issue every draft of these customers for the period, in one transaction."""
    customers = {c.pk: c for c in Customer.objects.select_for_update().filter(
        customer_id__in=customer_ids).order_by("pk")}
    drafts = list(Invoice.objects.select_for_update().filter(
        customer__in=list(customers), period=period, status=Invoice.Status.DRAFT).order_by("pk"))
    for invoice in drafts:
        invoice.customer = customers[invoice.customer_id]
    if drafts:
        _issue(drafts, period=period, actor=actor, as_of=as_of)
    return drafts


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
    document_event_send(event, invoice)
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
        spends_forget(customer_ids=[invoice.customer.customer_id], as_of=as_of)
    return invoice


def invoice_credit_room(invoice: Invoice) -> Decimal:
    """What credit notes may still take back: the total and the debit notes, less the
    credit notes issued."""
    debited = sum((note.amount for note in invoice.debit_notes.all()), Decimal(0))
    credited = sum((note.amount for note in invoice.credit_notes.all()), Decimal(0))
    return invoice.total + debited - credited


@transaction.atomic
def credit_note_issue(*, invoice_id: int, amount: Decimal, reason: str, actor: str, as_of: datetime) -> CreditNote:
    if amount <= 0 or not reason.strip():
        raise CreditNoteInvalid("A credit note needs an amount above zero and a reason.",
                                errors={"amount" if amount <= 0 else "reason": ["Required."]})
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status not in (Invoice.Status.FINALIZED, Invoice.Status.PAID):
        raise InvoiceStateConflict(f"Invoice {invoice} is {invoice.status}; credit notes need a finalized or paid one.")
    remaining = invoice_credit_room(invoice)
    if amount > remaining:
        raise CreditNoteTooLarge(f"At most {remaining:.2f} of {invoice.total:.2f} remains to credit.",
                                 errors={"amount": [f"Must not exceed {remaining:.2f}."]})
    note = CreditNote.objects.create(invoice=invoice, number=document_numbers_next(prefix="CN", year=as_of.year)[0],
                                     amount=amount, reason=reason, created_by=actor, created_at=as_of)
    audit_record(actor=actor, action="credit_note.issue", obj=note, before=None,
                 after={"invoice": invoice.number, "amount": f"{amount:.2f}", "reason": reason}, at=as_of)
    document_event_send("credit_note.issued", note)
    return note


def document_event_send(event: str, obj) -> None:
    """The webhook of an invoice's or a note's event, sent once the transaction commits."""
    webhook_event_publish(event=event, payload=document_json(obj))


def document_json(obj) -> dict:
    """The webhook `data` of an invoice, a credit note or a debit note."""
    if isinstance(obj, CreditNote | DebitNote):
        return {"object": "credit_note" if isinstance(obj, CreditNote) else "debit_note", "id": obj.pk,
                "number": obj.number, "invoice_id": obj.invoice_id,
                "invoice_number": obj.invoice.number, "customer_id": obj.invoice.customer.customer_id,
                "amount": f"{obj.amount:.2f}", "currency": obj.invoice.currency, "reason": obj.reason,
                "created_at": obj.created_at.isoformat()}
    return {"object": "invoice", "id": obj.pk, "number": obj.number, "customer_id": obj.customer.customer_id,
            "period": f"{obj.period:%Y-%m}", "status": obj.status, "currency": obj.currency,
            "subtotal": f"{obj.subtotal:.2f}", "total": f"{obj.total:.2f}",
            "issued_at": obj.issued_at.isoformat() if obj.issued_at else None,
            "due_at": obj.due_at.isoformat() if obj.due_at else None}
