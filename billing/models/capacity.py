"""Capacity sold as a product (DESIGN.md §2, §3): provisioned throughput reservations and
dedicated cluster rentals.

Invariants and where they are enforced:
- Terms are half-open [starts_at, ends_at), ends after starts: check constraints.
- A customer's reservation versions of one model tier never overlap: an exclusion
  constraint (a change is a new version from an hour on, like contracts).
- Two rentals of one cluster never overlap, whoever rents it: an exclusion constraint (409).
- Units, prices and counts are positive or zero as they say: check constraints.
- A rental bills the accelerators its cluster had when rented (`accelerator_count`, a
  snapshot taken by the service), so an inventory edit never re-prices a billed period.
- Nothing changes a period already invoiced (finalized or paid): the services refuse a term
  that meets one (409), billing/services/capacity.py.
- Terms on the hour: the services (422) and the APIs.
"""

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeOperators
from django.db import models
from django.db.models import F, Q

from billing.models.pricing import TstzRange
from metering.models import Customer


class Reservation(models.Model):
    """`units` of provisioned throughput of a model tier for a customer, at a price per
    unit-hour, over [starts_at, ends_at) (ends_at None: open). Usage served from it arrives
    as `service_tier: provisioned`; an optional `cluster` pins the capacity to one cluster."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="reservations")
    model_tier = models.SlugField(max_length=32)
    units = models.PositiveIntegerField()
    unit_hour_price = models.DecimalField(max_digits=14, decimal_places=6, help_text="USD per unit-hour.")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    cluster = models.ForeignKey("infra_inventory.Cluster", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="reservations")
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["customer", "model_tier", "starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                                   name="reservation_ends_after_it_starts"),
            models.CheckConstraint(condition=Q(units__gt=0), name="reservation_units_positive"),
            models.CheckConstraint(condition=Q(unit_hour_price__gte=0), name="reservation_price_not_negative"),
            ExclusionConstraint(
                name="reservation_versions_do_not_overlap",
                expressions=[("customer", RangeOperators.EQUAL), ("model_tier", RangeOperators.EQUAL),
                             (TstzRange("starts_at", "ends_at"), RangeOperators.OVERLAPS)],
            ),
        ]

    def __str__(self):
        return f"{self.customer.customer_id} {self.units} × {self.model_tier} from {self.starts_at:%Y-%m-%d %H:%M}"


class Rental(models.Model):
    """A whole cluster rented to one customer over [starts_at, ends_at) at a price per
    accelerator-hour (dedicated capacity). Its whole cost in those hours is the customer's."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="rentals")
    cluster = models.ForeignKey("infra_inventory.Cluster", on_delete=models.PROTECT, related_name="rentals")
    accelerator_hour_price = models.DecimalField(max_digits=14, decimal_places=6,
                                                 help_text="USD per accelerator-hour.")
    accelerator_count = models.PositiveIntegerField(
        help_text="The cluster's accelerators when it was rented: what the rental bills, whatever the inventory "
                  "says later.")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["cluster", "starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                                   name="rental_ends_after_it_starts"),
            models.CheckConstraint(condition=Q(accelerator_hour_price__gte=0), name="rental_price_not_negative"),
            models.CheckConstraint(condition=Q(accelerator_count__gt=0), name="rental_has_accelerators"),
            ExclusionConstraint(
                name="rentals_of_a_cluster_do_not_overlap",
                expressions=[("cluster", RangeOperators.EQUAL),
                             (TstzRange("starts_at", "ends_at"), RangeOperators.OVERLAPS)],
            ),
        ]

    def __str__(self):
        return f"{self.cluster} rented to {self.customer.customer_id} from {self.starts_at:%Y-%m-%d %H:%M}"
