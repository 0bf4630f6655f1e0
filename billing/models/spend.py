"""Spend control (DESIGN.md §7): budgets, the live spend of each customer's current
period and the alerts sent about them.

Invariants and where they are enforced:
- One budget per customer (one-to-one) with a positive monthly limit (a check
  constraint); thresholds are whole percentages in 1..1000, ascending and distinct:
  `budget_put`, which the API and the admin both go through.
- One `Spend` row per (customer, period): a unique constraint. It is derived (a cache of
  the rating engine's answer over `metering.UsageSegment`), refreshed in the transaction
  that changes what it is computed from, deleted when that cannot be cheaply done; a
  missing row is computed on the next read (billing/services/spend.py).
- An alert is sent at most once per (customer, key): a unique constraint; the key names
  the period and threshold (`2026-12:80`) or the credit entry whose balance ran out
  (`credit:42`), so two consumers or a replay can never send one twice.
"""

from django.db import models
from django.db.models import Q

from metering.models import Customer


class Budget(models.Model):
    """A monthly spend limit with alert thresholds (percentages of it); a hard budget
    answers `allowed: false` once spend reaches the limit."""

    customer = models.OneToOneField(Customer, on_delete=models.PROTECT, related_name="budget")
    monthly_limit = models.DecimalField(max_digits=14, decimal_places=2)
    thresholds = models.JSONField(default=list, blank=True, help_text="Percentages of the limit, e.g. [50, 80, 100].")
    hard = models.BooleanField(default=False, help_text="Refuse (allowed: false) at 100% of the limit.")
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["customer"]
        constraints = [models.CheckConstraint(condition=Q(monthly_limit__gt=0), name="budget_limit_positive")]

    def __str__(self):
        return f"{self.customer.customer_id}: {self.monthly_limit} a month"


class Spend(models.Model):
    """What a customer has spent in a period so far: usage at the prices in force with the
    contract's unit prices and discount, plus the period's capacity lines; and the
    prepaid credit balance it was computed against."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="spends")
    period = models.DateField(help_text="The first day of the month.")
    spend = models.DecimalField(max_digits=16, decimal_places=2)
    credit_balance = models.DecimalField(max_digits=16, decimal_places=2)
    credit_entry_last = models.BigIntegerField(default=0, help_text="The newest credit entry counted.")
    unpriced = models.BooleanField(default=False, help_text="Some usage has no price yet and is not counted.")
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["customer", "period"]
        constraints = [models.UniqueConstraint(fields=["customer", "period"], name="spend_one_per_period")]

    def __str__(self):
        return f"{self.customer.customer_id} {self.period:%Y-%m}: {self.spend}"


class SpendAlert(models.Model):
    """A `budget.threshold_crossed` or `credit.exhausted` announcement, once per key."""

    class Kind(models.TextChoices):
        THRESHOLD = "budget.threshold_crossed", "budget threshold crossed"
        CREDIT = "credit.exhausted", "credit exhausted"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="spend_alerts")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    key = models.CharField(max_length=64)
    period = models.DateField()
    threshold = models.PositiveIntegerField(null=True, blank=True)
    spend = models.DecimalField(max_digits=16, decimal_places=2)
    limit = models.DecimalField(max_digits=16, decimal_places=2, help_text="The budget limit or the credit balance.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["customer", "key"], name="spend_alert_once")]

    def __str__(self):
        return f"{self.kind} {self.customer.customer_id} {self.key}"
