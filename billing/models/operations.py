"""Billing runs, webhooks and the finance audit log.

Invariants: the audit log is append-only (trigger, migration 0004); a billing run's
progress only grows (customers_done ≤ customers_total, check constraint); a chunk is
counted once (done_at set under a conditional UPDATE, billing.services.billing_runs) and
has at most one live attempt (a Postgres advisory lock held by that attempt's session).
"""

from django.db import models
from django.db.models import F, Q


class BillingRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    period = models.DateField(help_text="First day of the billed month.")
    finalize = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    customers_total = models.PositiveIntegerField(default=0)
    customers_done = models.PositiveIntegerField(default=0)
    requested_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(customers_done__lte=F("customers_total")),
                                              name="billing_run_progress_bounded")]

    def __str__(self):
        return f"billing run {self.pk} for {self.period:%Y-%m} ({self.status})"


class BillingRunChunk(models.Model):
    """A slice of a run's customers, done once: a redelivered task finds it done and adds
    no progress twice. The attempt fields let the watchdog tell a lost chunk from one
    that is queued or under way (billing.services.billing_runs)."""

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    customer_ids = models.JSONField()
    done_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts begun since the run was last (re)driven.")
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="When a task was last sent for it.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="When its latest attempt began.")
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of its latest attempt.")
    error = models.TextField(blank=True, help_text="Why its latest attempt failed, if it did.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="billing_run_chunk_once")]


class WebhookEndpoint(models.Model):
    EVENTS = ("invoice.finalized", "invoice.paid", "invoice.voided", "credit_note.issued", "debit_note.issued",
              "margin.negative", "budget.threshold_crossed", "credit.exhausted")

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128, help_text="Signs every delivery (HMAC-SHA256).")
    events = models.JSONField(default=list, blank=True, help_text="Event types to send; empty for all.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.url

    def wants(self, event: str) -> bool:
        return self.active and (not self.events or event in self.events)


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # retried until WEBHOOK_RETRIES_MAX, then given up
        REFUSED = "refused"  # the destination is not a public HTTPS address; never retried

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"


class AuditEntry(models.Model):
    """Who did what to which finance object, and how it looked before and after."""

    at = models.DateTimeField()
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_type} {self.object_id}"
