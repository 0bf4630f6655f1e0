"""Price books, customer contracts and the prepaid credit ledger.

Invariants and where they are enforced:
- A published price book and its prices never change: Postgres triggers reject
  UPDATE/DELETE of a published book and any INSERT/UPDATE/DELETE of its prices
  (migration 0002, billing/triggers_sql.py). A new version is a new row, copied from the current one.
- Two published books never share an effective instant and revision: partial unique
  constraint. A corrective version (`corrects`) starts at the instant of the version it
  corrects with the next revision and supersedes it there; the corrected one stays, as published.
- Unit prices are ≥ 0 with at most 6 decimals: numeric(18, 6) and a check constraint.
- A customer's contract versions never overlap in time: an exclusion constraint.
- The credit ledger is append-only (trigger): grants are positive entries, draw-downs
  negative ones; the balance is their sum.
"""

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeOperators
from django.db import models
from django.db.models import F, Func, Q

from metering.models import Customer


class TokenClass(models.TextChoices):
    """The priced classes of metering.token_classes.CLASSES, in that order."""

    INPUT = "input"
    CACHED_INPUT = "cached_input"
    CACHE_WRITE = "cache_write"
    CACHE_WRITE_LONG = "cache_write_long"
    AUDIO_INPUT = "audio_input"
    OUTPUT = "output"
    AUDIO_OUTPUT = "audio_output"


class UnitPrice(models.Model):
    """USD per 1,000,000 tokens of one (model tier, service tier, token class)."""

    model_tier = models.SlugField(max_length=32)
    service_tier = models.CharField(max_length=16)
    token_class = models.CharField(max_length=16, choices=TokenClass.choices)
    unit_price = models.DecimalField(max_digits=18, decimal_places=6)

    class Meta:
        abstract = True

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model_tier, self.service_tier, self.token_class)


class PriceBook(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        PUBLISHED = "published"

    effective_from = models.DateTimeField(help_text="Prices apply to usage served from this instant (on the hour).")
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    note = models.CharField(max_length=200, blank=True)
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.CharField(max_length=150, blank=True, help_text="Who published it: user or API key.")
    revision = models.PositiveIntegerField(default=0, help_text="0, or one more than the version it corrects.")
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections",
                                 help_text="The published version this one corrects, from the same instant.")

    class Meta:
        ordering = ["-effective_from", "-revision"]
        permissions = [("publish_pricebook", "Can publish price books")]
        constraints = [
            models.UniqueConstraint(fields=["effective_from", "revision"], condition=Q(status="published"),
                                    name="price_book_one_published_per_instant"),
            models.CheckConstraint(condition=Q(status="draft") | Q(published_at__isnull=False),
                                   name="price_book_published_has_instant"),
        ]

    def __str__(self):
        return f"Price book from {self.effective_from:%Y-%m-%d %H:%M} UTC ({self.status})"


class Price(UnitPrice):
    price_book = models.ForeignKey(PriceBook, on_delete=models.CASCADE, related_name="prices")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["price_book", "model_tier", "service_tier", "token_class"],
                                    name="price_once_per_key"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="price_not_negative"),
        ]


class TstzRange(Func):
    function = "TSTZRANGE"
    output_field = models.Field()


class Contract(models.Model):
    """One version of a customer's terms, in force over [effective_from, effective_to)."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="contracts")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)
    discount_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    monthly_minimum = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, help_text="User or API key.")

    class Meta:
        ordering = ["customer", "-effective_from"]
        constraints = [
            ExclusionConstraint(
                name="contract_versions_do_not_overlap",
                expressions=[("customer", RangeOperators.EQUAL),
                             (TstzRange("effective_from", "effective_to"), RangeOperators.OVERLAPS)],
            ),
            models.CheckConstraint(condition=Q(effective_to__isnull=True) | Q(effective_to__gt=F("effective_from")),
                                   name="contract_ends_after_it_starts"),
            models.CheckConstraint(condition=Q(discount_percent__gte=0, discount_percent__lte=100),
                                   name="contract_discount_is_a_percentage"),
            models.CheckConstraint(condition=Q(monthly_minimum__isnull=True) | Q(monthly_minimum__gte=0),
                                   name="contract_minimum_not_negative"),
        ]

    def __str__(self):
        return f"{self.customer.customer_id} contract from {self.effective_from:%Y-%m-%d}"


class ContractPrice(UnitPrice):
    contract = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="unit_price_overrides")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contract", "model_tier", "service_tier", "token_class"],
                                    name="contract_price_once_per_key"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="contract_price_not_negative"),
        ]


class ContractVolumeBand(UnitPrice):
    """A band of a graduated schedule on a period's tokens of one price key."""

    contract = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="volume_bands")
    tokens_up_to = models.BigIntegerField(null=True, blank=True, help_text="Empty: every token above the last band.")

    class Meta:
        ordering = ["model_tier", "service_tier", "token_class", F("tokens_up_to").asc(nulls_last=True)]
        constraints = [
            models.UniqueConstraint(fields=["contract", "model_tier", "service_tier", "token_class", "tokens_up_to"],
                                    name="volume_band_once", nulls_distinct=False),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="volume_band_price_not_negative"),
            models.CheckConstraint(condition=Q(tokens_up_to__isnull=True) | Q(tokens_up_to__gt=0),
                                   name="volume_band_bound_positive"),
        ]


class CreditEntry(models.Model):
    """Prepaid credit: a grant (> 0) or a draw-down by an invoice (< 0). Append-only."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_entries")
    invoice = models.OneToOneField("billing.Invoice", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="credit_draw_down", help_text="The invoice a draw-down paid.")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150, help_text="The staff user or API key that made the entry.")

    class Meta:
        ordering = ["customer", "created_at", "id"]
        verbose_name_plural = "credit entries"
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="credit_entry_not_zero")]

    def __str__(self):
        return f"{self.customer.customer_id} {self.amount:+} ({self.reason})"
