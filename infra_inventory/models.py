"""The fleet (SKUs, datacenters, power contracts, clusters, deployments), measured power,
and the cost allocation projection (DESIGN.md §4).

Invariants and where they are enforced:
- Costs, PUE and prices are non-negative, PUE ≥ 1, service windows end after they start,
  deployment shares in (0, 1]: check constraints.
- One power contract per datacenter and instant; one reading per cluster-hour (unique).
- Allocation rows are a projection rebuilt per cluster-hour from the rollups, readings
  and inventory; for every cluster-hour Σ allocated shares = the hour's cost exactly
  (allocation core, largest remainder in micro-dollars), idle when nothing was served.
"""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q


class HardwareSku(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    vendor = models.CharField(max_length=64)
    accelerator = models.CharField(max_length=64)
    unit_cost = models.DecimalField(max_digits=14, decimal_places=2, help_text="USD per accelerator.")
    amortization_months = models.PositiveIntegerField()
    board_watts = models.PositiveIntegerField(help_text="Per accelerator; estimates power without a reading.")
    weight_input = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal(1))
    weight_cached_input = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("0.1"))
    weight_output = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal(4))

    class Meta:
        ordering = ["name"]
        verbose_name = "hardware SKU"
        constraints = [
            models.CheckConstraint(condition=Q(unit_cost__gte=0), name="sku_cost_not_negative"),
            models.CheckConstraint(condition=Q(amortization_months__gt=0, board_watts__gt=0), name="sku_positive"),
            models.CheckConstraint(condition=Q(weight_input__gte=0, weight_cached_input__gte=0, weight_output__gte=0),
                                   name="sku_weights_not_negative"),
        ]

    def __str__(self):
        return self.name


class Datacenter(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    region = models.CharField(max_length=64)
    pue = models.DecimalField(max_digits=4, decimal_places=2, help_text="Power usage effectiveness, ≥ 1.")

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=Q(pue__gte=1), name="datacenter_pue_at_least_one")]

    def __str__(self):
        return self.name


class PowerContract(models.Model):
    """USD per kWh at a datacenter from `effective_from` until the next contract."""

    datacenter = models.ForeignKey(Datacenter, on_delete=models.PROTECT, related_name="power_contracts")
    effective_from = models.DateTimeField()
    price_per_kwh = models.DecimalField(max_digits=8, decimal_places=4)

    class Meta:
        ordering = ["datacenter", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["datacenter", "effective_from"], name="power_contract_once_per_instant"),
            models.CheckConstraint(condition=Q(price_per_kwh__gte=0), name="power_price_not_negative"),
        ]


class Cluster(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    datacenter = models.ForeignKey(Datacenter, on_delete=models.PROTECT, related_name="clusters")
    sku = models.ForeignKey(HardwareSku, on_delete=models.PROTECT, related_name="clusters")
    accelerator_count = models.PositiveIntegerField()
    in_service_from = models.DateTimeField()
    in_service_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(accelerator_count__gt=0), name="cluster_has_accelerators"),
            models.CheckConstraint(condition=Q(in_service_to__isnull=True) | Q(in_service_to__gt=F("in_service_from")),
                                   name="cluster_service_ends_after_it_starts"),
        ]

    def __str__(self):
        return self.name

    def in_service(self, hour) -> bool:
        return self.in_service_from <= hour and (self.in_service_to is None or hour < self.in_service_to)


class Deployment(models.Model):
    """Where a model runs in a region: usage without a cluster is placed by these shares."""

    model = models.CharField(max_length=128)
    region = models.CharField(max_length=64)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="deployments")
    share = models.DecimalField(max_digits=5, decimal_places=4)

    class Meta:
        ordering = ["model", "region", "cluster"]
        constraints = [
            models.UniqueConstraint(fields=["model", "region", "cluster"], name="deployment_once"),
            models.CheckConstraint(condition=Q(share__gt=0, share__lte=1), name="deployment_share_fraction"),
        ]


class PowerReading(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="power_readings")
    hour = models.DateTimeField()
    it_kwh = models.DecimalField(max_digits=14, decimal_places=4, help_text="Measured IT energy in that hour.")
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["cluster", "hour"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "hour"], name="power_reading_once_per_cluster_hour"),
            models.CheckConstraint(condition=Q(it_kwh__gte=0), name="power_reading_not_negative"),
        ]


class ClusterHourCost(models.Model):
    """What one cluster-hour cost, and how much usage it served (0 weighted tokens: idle)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="hour_costs")
    hour = models.DateTimeField()
    hardware_cost = models.DecimalField(max_digits=18, decimal_places=6)
    power_cost = models.DecimalField(max_digits=18, decimal_places=6)
    it_kwh = models.DecimalField(max_digits=18, decimal_places=6)
    energy_kwh = models.DecimalField(max_digits=18, decimal_places=6)
    power_estimated = models.BooleanField()
    weighted_tokens = models.DecimalField(max_digits=24, decimal_places=4)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "hour"], name="cluster_hour_cost_once")]
        indexes = [models.Index(fields=["hour"])]


class AllocatedHour(models.Model):
    """An hour the allocation covers, and the usage it saw: when the rollups of the hour
    hold more events, or a reading arrived after `allocated_at`, the hour is allocated again."""

    hour = models.DateTimeField(unique=True)
    rollup_events = models.BigIntegerField()
    allocated_at = models.DateTimeField()


class CostAllocation(models.Model):
    """One key's share of a cluster-hour's cost."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="+")
    hour = models.DateTimeField()
    customer_id = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    service_tier = models.CharField(max_length=16)
    input_tokens = models.BigIntegerField(help_text="Uncached prompt tokens.")
    cached_input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    weighted_tokens = models.DecimalField(max_digits=24, decimal_places=4)
    hardware_cost = models.DecimalField(max_digits=18, decimal_places=6)
    power_cost = models.DecimalField(max_digits=18, decimal_places=6)
    energy_kwh = models.DecimalField(max_digits=18, decimal_places=6)

    class Meta:
        indexes = [models.Index(fields=["hour"]), models.Index(fields=["cluster", "hour"])]


class UnplacedUsage(models.Model):
    """Usage with no cluster and no deployment for its model and region: reported, never hidden."""

    hour = models.DateTimeField()
    customer_id = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    region = models.CharField(max_length=64)
    tokens = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["hour"])]


class MarginAlert(models.Model):
    """A UTC day on which one customer's usage of one model tier earned less than the cost
    allocated to it (infra_inventory.margins). Recorded once per (day, customer, tier) —
    unique, so two checks racing cannot both record it — and announced once, by the
    `margin.negative` webhook written in the same transaction. The figures are those
    announced; a later re-check never changes them."""

    day = models.DateField()
    customer_id = models.CharField(max_length=64)
    model_tier = models.CharField(max_length=32)
    tokens = models.BigIntegerField()
    revenue = models.DecimalField(max_digits=14, decimal_places=2, help_text="USD, rated before discounts.")
    cost = models.DecimalField(max_digits=18, decimal_places=6, help_text="USD, allocated hardware + power.")
    announced_at = models.DateTimeField()

    class Meta:
        ordering = ["day", "customer_id", "model_tier"]
        constraints = [
            models.UniqueConstraint(fields=["day", "customer_id", "model_tier"], name="margin_alert_once"),
            models.CheckConstraint(condition=Q(revenue__lt=F("cost")), name="margin_alert_below_cost"),
        ]

    def __str__(self):
        return f"{self.day} {self.customer_id} {self.model_tier}"
