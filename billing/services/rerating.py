"""Re-rating of finalized invoices (DESIGN.md §6): preview, and apply as one credit or
debit note linked to the invoice. The invoice itself never changes.

What a period bills now is the usage its invoice billed (`BilledUsage`: its own hours
and the late hours it took) corrected by the usage adjustments recorded after it was
finalized (numbered after `Invoice.adjustments_through`), rated with the price books
and contract in force now, graduated bands over the whole period, discount and minimum.
What it billed is the invoice's lines, or the state its last re-rating left
(`Rerating.billed_after`), so applying twice issues nothing more.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction

from billing.models import BilledUsage, CreditNote, DebitNote, Invoice, Rerating
from billing.rating.rerating import COMPARED_KINDS, KeyDifference, KeyTotal, difference_total, keys_compare
from billing.selectors import PeriodUsage, adjustment_billable_hourly_sums, month_bounds
from billing.services.audit import audit_record
from billing.services.invoices import (
    CreditNoteInvalid, CreditNoteTooLarge, InvoiceStateConflict, document_event_send, document_numbers_next,
    invoice_credit_room, period_rate_priced, period_start_of,
)
from metering.token_classes import FIELDS as TOKEN_FIELDS

RERATABLE = (Invoice.Status.FINALIZED, Invoice.Status.PAID)


@dataclass(frozen=True)
class RerateResult:
    invoice: Invoice
    differences: tuple[KeyDifference, ...]
    now: tuple[KeyTotal, ...]

    @property
    def difference(self) -> Decimal:
        return difference_total(self.differences)


def _key_json(total: KeyTotal) -> dict:
    return {"kind": total.kind, "model": total.model, "service_tier": total.service_tier,
            "token_class": total.token_class, "period": total.period, "tokens": total.tokens,
            "amount": f"{total.amount:.2f}"}


def difference_json(d: KeyDifference) -> dict:
    """A line of `rerate-preview` (API.md), as stored on the re-rating."""
    return {"kind": d.kind, "model": d.model, "service_tier": d.service_tier, "token_class": d.token_class,
            "period": d.period, "billed_tokens": d.billed_tokens, "tokens": d.tokens,
            "billed_amount": f"{d.billed_amount:.2f}", "amount": f"{d.amount:.2f}",
            "difference": f"{d.difference:.2f}"}


def _billed(invoice: Invoice) -> list[KeyTotal]:
    last = invoice.reratings.order_by("-id").first()
    if last is not None:
        return [KeyTotal(t["kind"], t["model"], t["service_tier"], t["token_class"], t["period"], t["tokens"],
                         Decimal(t["amount"])) for t in last.billed_after]
    period = f"{invoice.period:%Y-%m}"
    return [KeyTotal(line.kind, line.model, line.service_tier, line.token_class, line.usage_period or period,
                     line.tokens, line.amount)
            for line in invoice.lines.filter(kind__in=COMPARED_KINDS).order_by("position")]


def _usage_now(invoice: Invoice, start: datetime, end: datetime) -> PeriodUsage:
    """The hourly usage the invoice billed, plus the adjustments recorded since in its period."""
    customer_id = invoice.customer.customer_id
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(TOKEN_FIELDS))
    billed = BilledUsage.objects.filter(invoice=invoice).values_list("customer_id", "model", "service_tier", "hour",
                                                                     *TOKEN_FIELDS)
    corrections = adjustment_billable_hourly_sums(customer_id=customer_id, start=start, end=end,  # not rentals'
                                                  after_id=invoice.adjustments_through or 0)
    for customer, model, service_tier, hour, *tokens in [*billed, *corrections]:
        total = sums[(customer, model, service_tier, hour)]
        for position, count in enumerate(tokens):
            total[position] += count
    rows = [(*key, *tokens) for key, tokens in sums.items()]
    return PeriodUsage(own=[r for r in rows if r[3] >= start], late=[r for r in rows if r[3] < start])


def invoice_rerate_preview(invoice: Invoice) -> RerateResult:
    """What re-rating the invoice would issue now; writes nothing."""
    if invoice.status not in RERATABLE:
        raise InvoiceStateConflict(f"Invoice {invoice} is {invoice.status}; only a finalized or paid invoice "
                                   "is re-rated (a draft is recomputed by every billing run).")
    start, end = month_bounds(period_start_of(invoice.period))
    customer_id = invoice.customer.customer_id
    rated = period_rate_priced(customer_ids=[customer_id], start=start, end=end,
                               usage=_usage_now(invoice, start, end), with_credits=False)[customer_id]
    period = f"{invoice.period:%Y-%m}"
    now = tuple(KeyTotal.of_line(line, period=period) for line in rated.lines if line.kind in COMPARED_KINDS)
    return RerateResult(invoice, keys_compare(billed=_billed(invoice), now=now), now)


@transaction.atomic
def invoice_rerate(*, invoice_id: int, reason: str, actor: str, as_of: datetime) -> Rerating | None:
    """Issue the difference as a credit note (over-billed) or a debit note (under-billed);
    None when there is none. Under the invoice's row lock, so concurrent calls issue one."""
    if not reason.strip():
        raise CreditNoteInvalid("A re-rating needs a reason.", errors={"reason": ["Required."]})
    invoice = Invoice.objects.select_for_update().select_related("customer").get(pk=invoice_id)
    result = invoice_rerate_preview(invoice)
    difference = result.difference
    if difference == 0:
        return None
    note_fields = {"invoice": invoice, "amount": abs(difference), "reason": reason, "created_by": actor,
                   "created_at": as_of}
    if difference < 0:
        if -difference > (remaining := invoice_credit_room(invoice)):
            raise CreditNoteTooLarge(f"The re-rating credits {-difference:.2f}, but at most {remaining:.2f} of "
                                     f"invoice {invoice.number} remains to credit.")
        note = CreditNote.objects.create(number=document_numbers_next(prefix="CN", year=as_of.year)[0], **note_fields)
    else:
        note = DebitNote.objects.create(number=document_numbers_next(prefix="DN", year=as_of.year)[0], **note_fields)
    rerating = Rerating.objects.create(
        invoice=invoice, difference=difference, lines=[difference_json(d) for d in result.differences],
        billed_after=[_key_json(t) for t in result.now], reason=reason, created_by=actor, created_at=as_of,
        **{"credit_note" if difference < 0 else "debit_note": note})
    audit_record(actor=actor, action="invoice.rerate", obj=rerating, before={"invoice": invoice.number},
                 after={"difference": f"{difference:.2f}", "document": note.number, "lines": rerating.lines}, at=as_of)
    kind = "credit_note" if difference < 0 else "debit_note"
    audit_record(actor=actor, action=f"{kind}.issue", obj=note, before=None, at=as_of,
                 after={"invoice": invoice.number, "amount": f"{note.amount:.2f}", "reason": reason})
    document_event_send(f"{kind}.issued", note)
    return rerating


def _period_invoices(period: date):
    return Invoice.objects.filter(period=period, status__in=RERATABLE).select_related("customer").order_by(
        "customer__customer_id")


def period_rerate_preview(*, period: date) -> list[RerateResult]:
    """Every finalized or paid invoice of the period that re-rating would change."""
    return [result for invoice in _period_invoices(period) if (result := invoice_rerate_preview(invoice)).differences]


def period_rerate(*, period: date, reason: str, actor: str, as_of: datetime) -> list[Rerating]:
    """Apply every re-rating of the period, each invoice in a transaction of its own (which
    rates it under its lock and issues nothing when nothing changed)."""
    issued = []
    for invoice_id in _period_invoices(period).values_list("pk", flat=True):
        if (rerating := invoice_rerate(invoice_id=invoice_id, reason=reason, actor=actor, as_of=as_of)) is not None:
            issued.append(rerating)
    return issued
