"""Invoices, their lines, the usage they billed, and credit notes (DESIGN.md §3).

Invariants and where they are enforced:
- One live invoice per customer and period: partial unique constraint (void excluded).
- A finalized invoice never changes but for the finalized → paid / void transition,
  and its lines never change: Postgres triggers (migration 0004, billing/triggers_sql.py).
- Numbers are gapless per year and kind: `DocumentCounter` rows, locked in the
  finalizing transaction; a number is set exactly when the status leaves draft.
- `BilledUsage` records, per finalized invoice, the hourly tokens it billed; usage in a
  closed period beyond what was billed is late usage. Append-only (trigger).
- Credit notes are append-only (trigger); their sum never exceeds the invoice total
  and its debit notes (checked under the invoice's row lock).
- `adjustments_through` is the last usage adjustment of the customer that the finalized
  invoice's usage includes: adjustments serialize with finalization on the customer row
  (metering.adjustments), so every later one has a higher id and is billed by
  re-rating (`Rerating`), never as late usage.
- Debit notes have their own gapless `DN-YYYY-NNNNNN` numbers; re-ratings, credit and
  debit notes are append-only (triggers, migration 0009). A re-rating is issued as
  exactly one credit note or one debit note, under the invoice's row lock, so two
  concurrent applies issue one document.
"""

from django.db import models
from django.db.models import Q

from metering.models import Customer


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        FINALIZED = "finalized"
        PAID = "paid"
        VOID = "void"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    period = models.DateField(help_text="First day of the billed calendar month (UTC).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    number = models.CharField(max_length=16, null=True, blank=True, unique=True)
    currency = models.CharField(max_length=3, default="USD")
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    computed_at = models.DateTimeField(help_text="When the lines were last computed.")
    issued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    adjustments_through = models.BigIntegerField(
        null=True, blank=True, help_text="Id of the last usage adjustment of the customer its usage includes.")

    class Meta:
        ordering = ["-period", "customer_id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "period"], condition=~Q(status="void"),
                                    name="invoice_one_live_per_customer_period"),
            models.CheckConstraint(condition=Q(status="draft", number__isnull=True)
                                   | (~Q(status="draft") & Q(number__isnull=False, issued_at__isnull=False)),
                                   name="invoice_numbered_once_issued"),
        ]
        indexes = [models.Index(fields=["status", "period"])]

    def __str__(self):
        return self.number or f"draft {self.customer.customer_id} {self.period:%Y-%m}"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        USAGE = "usage"
        LATE_USAGE = "late_usage"
        CAPACITY = "capacity"
        DISCOUNT = "discount"
        MINIMUM = "minimum"
        CREDITS = "credits"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.CharField(max_length=200)
    model = models.CharField(max_length=128, blank=True)
    service_tier = models.CharField(max_length=16, blank=True)
    token_class = models.CharField(max_length=16, blank=True)
    tokens = models.BigIntegerField(default=0)
    unit_price = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    usage_period = models.CharField(max_length=7, blank=True, help_text="YYYY-MM of late usage.")
    usage_start = models.DateTimeField(null=True, blank=True, help_text="Usage lines: the stretch of time priced, "
                                       "[start, end); a price change mid-period splits a key into several lines.")
    usage_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position_once")]


class BilledUsage(models.Model):
    """Hourly tokens a finalized invoice billed, for its own period or as late usage."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="billed_usage")
    customer_id = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    service_tier = models.CharField(max_length=16)
    hour = models.DateTimeField()
    input_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField(db_default=0)
    cache_write_long_tokens = models.BigIntegerField(db_default=0)
    audio_input_tokens = models.BigIntegerField(db_default=0)
    audio_output_tokens = models.BigIntegerField(db_default=0)
    reasoning_tokens = models.BigIntegerField(db_default=0)

    class Meta:
        indexes = [models.Index(fields=["customer_id", "hour"])]


class DocumentCounter(models.Model):
    """The last number issued per (prefix, year): locked to hand out the next one."""

    prefix = models.CharField(max_length=4)
    year = models.PositiveIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prefix", "year"], name="document_counter_once")]


class InvoiceNote(models.Model):
    """A document against a finalized invoice that changes what is owed by `amount` (> 0):
    a credit note takes it off, a debit note adds it."""

    number = models.CharField(max_length=16, unique=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reason = models.CharField(max_length=500)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self):
        return self.number


class CreditNote(InvoiceNote):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")

    class Meta(InvoiceNote.Meta):
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="credit_note_amount_positive")]


class DebitNote(InvoiceNote):
    """What a finalized invoice under-billed, owed on top of it (DESIGN.md §6)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="debit_notes")

    class Meta(InvoiceNote.Meta):
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="debit_note_amount_positive")]


class Rerating(models.Model):
    """A re-rating of a finalized invoice that found a difference, and the one document
    that issued it. `lines` is the comparison (API.md rerate-preview); `billed_after` is
    what the invoice's usage, discount and minimum now stand at, the next re-rating's
    starting point."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="reratings")
    difference = models.DecimalField(max_digits=14, decimal_places=2)
    lines = models.JSONField()
    billed_after = models.JSONField()
    reason = models.CharField(max_length=500)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    credit_note = models.OneToOneField(CreditNote, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="rerating")
    debit_note = models.OneToOneField(DebitNote, null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="rerating")

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(
            condition=Q(difference__lt=0, credit_note__isnull=False, debit_note__isnull=True)
            | Q(difference__gt=0, credit_note__isnull=True, debit_note__isnull=False),
            name="rerating_one_document")]

    def __str__(self):
        return f"re-rating of {self.invoice} ({self.difference:+.2f})"
