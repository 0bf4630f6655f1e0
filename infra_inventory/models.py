"""The fleet (SKUs, datacenters, power contracts, clusters, deployments), measured power,
and the cost allocation projection (DESIGN.md §4).

Invariants and where they are enforced:
- Costs, PUE, prices and token weights are non-negative, PUE ≥ 1, service windows end after they start,
  deployment shares in (0, 1]: check constraints.
- One power contract per datacenter and instant; one lease per cluster and instant; one grid
  intensity per datacenter and instant; one reading per cluster-hour (unique).
- A leased cluster-hour with no lease in force is never priced: it is recorded as an
  UnpricedClusterHour, with the tokens it served (services.costs_allocate).
- Allocation rows are a projection rebuilt per cluster-hour from the rollups, readings
  and inventory; for every cluster-hour Σ allocated shares = the hour's cost exactly
  (allocation core, largest remainder in micro-dollars), idle when nothing was served.
  In a rented hour (billing.Rental) the shares go to the renter's usage only, or, when it
  served nothing, one `reserved_idle` row of the renter carries the whole cost; usage of
  other customers there is refused (UnplacedUsage, reason `rented_to_other_customer`).
  Emissions are split the same way, in milligrams (kg to 6 places). A cluster-hour whose
  datacenter has no grid intensity in force carries only its embodied emissions and says so
  (`grid_intensity_missing`), reported by services.hours_without_grid_intensity.
- An allocated hour is allocated again when what priced it changed after `allocated_at`:
  every inventory row has `updated_at` (auto_now: set by each save, so the API, the admin
  and the services all set it; a QuerySet.update() must set it itself), compared in one
  query by services.hours_stale. Rentals are compared by state (the renter each cost row
  names against the rental in force now), so ending one early needs no timestamp.
"""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

from infra_inventory.allocation import TOKEN_CLASSES, TokenWeights


WEIGHTS_HELP = {  # why each default weighs what it does (TokenWeights holds the numbers)
    "input": "An uncached text prompt token: one token of prefill, the unit of the other weights.",
    "cached_input": "A prompt token read from the prompt cache: its prefill is skipped, only the attention over "
                    "its stored KV entries is paid.",
    "cache_write": "A prompt token written to the cache with the short (≈5 min) lifetime: a full prefill, plus "
                   "the accelerator memory its KV entries hold until they expire.",
    "cache_write_long": "A prompt token written with the long (≈1 h) lifetime: a full prefill, plus its KV entries "
                        "kept twelve times as long, mostly offloaded to host memory and read back on a hit.",
    "audio_input": "An uncached audio prompt token: prefill behind an audio encoder, served to realtime sessions "
                   "in small batches.",
    "output": "A generated text token (reasoning included): one decode step, memory-bound and batched.",
    "audio_output": "A generated audio token: a decode step plus the codec that renders it as sound, at realtime "
                    "latency in small batches.",
}


UPDATED_HELP = ("When this row was last written: hours allocated before then that it prices are allocated "
                "again (services.hours_stale).")


def _weight(token_class: str) -> models.DecimalField:
    default = getattr(TokenWeights(), token_class)
    return models.DecimalField(max_digits=8, decimal_places=4, default=default, validators=[MinValueValidator(0)],
                               help_text=f"Default {default.normalize()}. {WEIGHTS_HELP[token_class]}")


class HardwareSku(models.Model):
    """An accelerator model. Its token weights say how the cost of a cluster-hour is shared
    among the token classes served in it (DESIGN.md §4), relative to an uncached prompt token."""

    name = models.SlugField(max_length=64, unique=True)
    vendor = models.CharField(max_length=64)
    accelerator = models.CharField(max_length=64)
    unit_cost = models.DecimalField(max_digits=14, decimal_places=2, help_text="USD per accelerator.")
    amortization_months = models.PositiveIntegerField()
    board_watts = models.PositiveIntegerField(help_text="Per accelerator; estimates power without a reading.")
    embodied_kg_co2e = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal(0), db_default=0,
                                           validators=[MinValueValidator(0)],
                                           help_text="Embodied footprint per accelerator (kgCO2e), amortized over "
                                                     "the same months as its cost.")
    weight_input = _weight("input")
    weight_cached_input = _weight("cached_input")
    weight_output = _weight("output")
    weight_cache_write = _weight("cache_write")
    weight_cache_write_long = _weight("cache_write_long")
    weight_audio_input = _weight("audio_input")
    weight_audio_output = _weight("audio_output")
    updated_at = models.DateTimeField(auto_now=True, help_text=UPDATED_HELP)

    class Meta:
        ordering = ["name"]
        verbose_name = "hardware SKU"
        constraints = [
            models.CheckConstraint(condition=Q(unit_cost__gte=0), name="sku_cost_not_negative"),
            models.CheckConstraint(condition=Q(embodied_kg_co2e__gte=0), name="sku_embodied_not_negative"),
            models.CheckConstraint(condition=Q(amortization_months__gt=0, board_watts__gt=0), name="sku_positive"),
            models.CheckConstraint(condition=Q(**{f"weight_{c}__gte": 0 for c in TOKEN_CLASSES}),
                                   name="sku_weights_not_negative"),
        ]

    def __str__(self):
        return self.name

    @property
    def token_weights(self) -> TokenWeights:
        return TokenWeights(**{c: getattr(self, f"weight_{c}") for c in TOKEN_CLASSES})


class Datacenter(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    region = models.CharField(max_length=64)
    pue = models.DecimalField(max_digits=4, decimal_places=2, help_text="Power usage effectiveness, ≥ 1.")
    updated_at = models.DateTimeField(auto_now=True, help_text=UPDATED_HELP)

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
    updated_at = models.DateTimeField(auto_now=True, help_text=UPDATED_HELP)

    class Meta:
        ordering = ["datacenter", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["datacenter", "effective_from"], name="power_contract_once_per_instant"),
            models.CheckConstraint(condition=Q(price_per_kwh__gte=0), name="power_price_not_negative"),
        ]


class GridIntensity(models.Model):
    """gCO2e per kWh of a datacenter's grid from `effective_from` until the next one."""

    datacenter = models.ForeignKey(Datacenter, on_delete=models.PROTECT, related_name="grid_intensities")
    effective_from = models.DateTimeField()
    g_co2e_per_kwh = models.DecimalField(max_digits=8, decimal_places=2)
    updated_at = models.DateTimeField(auto_now=True, help_text=UPDATED_HELP)

    class Meta:
        ordering = ["datacenter", "effective_from"]
        verbose_name_plural = "grid intensities"
        constraints = [
            models.UniqueConstraint(fields=["datacenter", "effective_from"], name="grid_intensity_once_per_instant"),
            models.CheckConstraint(condition=Q(g_co2e_per_kwh__gte=0), name="grid_intensity_not_negative"),
        ]


class Cluster(models.Model):
    class Ownership(models.TextChoices):
        OWNED = "owned"
        LEASED = "leased"

    name = models.SlugField(max_length=64, unique=True)
    datacenter = models.ForeignKey(Datacenter, on_delete=models.PROTECT, related_name="clusters")
    sku = models.ForeignKey(HardwareSku, on_delete=models.PROTECT, related_name="clusters")
    accelerator_count = models.PositiveIntegerField()
    in_service_from = models.DateTimeField()
    in_service_to = models.DateTimeField(null=True, blank=True)
    ownership = models.CharField(max_length=8, choices=Ownership.choices, default=Ownership.OWNED,
                                 db_default=Ownership.OWNED,
                                 help_text="Owned: its SKU's cost is amortized. Leased: priced by its lease in force.")
    updated_at = models.DateTimeField(auto_now=True, help_text=UPDATED_HELP)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(accelerator_count__gt=0), name="cluster_has_accelerators"),
            models.CheckConstraint(condition=Q(ownership__in=["owned", "leased"]), name="cluster_ownership_known"),
            models.CheckConstraint(condition=Q(in_service_to__isnull=True) | Q(in_service_to__gt=F("in_service_from")),
                                   name="cluster_service_ends_after_it_starts"),
        ]

    def __str__(self):
        return self.name

    def in_service(self, hour) -> bool:
        return self.in_service_from <= hour and (self.in_service_to is None or hour < self.in_service_to)


class Lease(models.Model):
    """What a leased cluster costs per accelerator-hour from `effective_from` until the next
    lease of the cluster (effective-dated, like power contracts)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="leases")
    provider = models.CharField(max_length=64)
    effective_from = models.DateTimeField()
    price_per_accelerator_hour = models.DecimalField(max_digits=12, decimal_places=6, help_text="USD.")
    includes_power = models.BooleanField(default=False, help_text="Power is in the price: the power term is 0.")
    committed_until = models.DateTimeField(null=True, blank=True, help_text="End of the committed term, if any.")
    updated_at = models.DateTimeField(auto_now=True, help_text=UPDATED_HELP)

    class Meta:
        ordering = ["cluster", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "effective_from"], name="lease_once_per_instant"),
            models.CheckConstraint(condition=Q(price_per_accelerator_hour__gte=0), name="lease_price_not_negative"),
            models.CheckConstraint(condition=Q(committed_until__isnull=True)
                                   | Q(committed_until__gt=F("effective_from")),
                                   name="lease_commitment_after_start"),
        ]

    def __str__(self):
        return f"{self.cluster} from {self.provider} from {self.effective_from:%Y-%m-%d %H:%M}"


class Deployment(models.Model):
    """Where a model runs in a region: usage without a cluster is placed by these shares."""

    model = models.CharField(max_length=128)
    region = models.CharField(max_length=64)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="deployments")
    share = models.DecimalField(max_digits=5, decimal_places=4)
    updated_at = models.DateTimeField(auto_now=True, help_text=UPDATED_HELP)

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
    emissions_kg_co2e = models.DecimalField(max_digits=18, decimal_places=6, db_default=0)
    rented_to = models.CharField(max_length=64, db_default="", help_text="The renting customer, if rented.")
    grid_intensity_missing = models.BooleanField(
        db_default=False, help_text="No grid intensity in force at the datacenter: the emissions are the embodied "
                                    "share only, the grid's are not known (never counted as 0).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "hour"], name="cluster_hour_cost_once")]
        indexes = [
            models.Index(fields=["hour"]),
            # services.hours_stale looks for rented hours no rental covers any more, and
            # services.hours_without_grid_intensity for the flagged ones: both few.
            models.Index(fields=["hour"], condition=~Q(rented_to=""), name="cluster_hour_cost_rented"),
            models.Index(fields=["hour"], condition=Q(grid_intensity_missing=True), name="cluster_hour_cost_no_grid"),
        ]


class AllocatedHour(models.Model):
    """An hour the allocation covers, and the usage it saw: when the rollups of the hour
    hold more events, or a reading, an adjustment or an inventory row that prices the hour
    was written after `allocated_at`, the hour is allocated again (services.hours_stale)."""

    hour = models.DateTimeField(unique=True)
    rollup_events = models.BigIntegerField()
    allocated_at = models.DateTimeField()


# CostAllocation's token columns, in UsageTokens.counts order: one per priced class, named
# after it, then reasoning.
TOKEN_COLUMNS = (*(f"{token_class}_tokens" for token_class in TOKEN_CLASSES), "reasoning_tokens")


class CostAllocation(models.Model):
    """One key's share of a cluster-hour's cost."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="+")
    hour = models.DateTimeField()
    customer_id = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    service_tier = models.CharField(max_length=16)
    # The priced token classes (metering.token_classes.priced), disjoint: `input_tokens`
    # and `output_tokens` are the classes, not the event's totals.
    input_tokens = models.BigIntegerField(help_text="Prompt tokens of no other class: not cached, not written to "
                                                    "the cache, not audio.")
    cached_input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField(help_text="Generated text tokens (output less audio), reasoning included.")
    cache_write_tokens = models.BigIntegerField(db_default=0)
    cache_write_long_tokens = models.BigIntegerField(db_default=0)
    audio_input_tokens = models.BigIntegerField(db_default=0)
    audio_output_tokens = models.BigIntegerField(db_default=0)
    reasoning_tokens = models.BigIntegerField(db_default=0, help_text="Part of output + audio output: reported, "
                                                                      "weighted as the output it is part of.")
    weighted_tokens = models.DecimalField(max_digits=24, decimal_places=4)
    hardware_cost = models.DecimalField(max_digits=18, decimal_places=6)
    power_cost = models.DecimalField(max_digits=18, decimal_places=6)
    energy_kwh = models.DecimalField(max_digits=18, decimal_places=6)
    emissions_kg_co2e = models.DecimalField(max_digits=18, decimal_places=6, db_default=0)
    reserved_idle = models.BooleanField(db_default=False, help_text="The renter's idle hour: no tokens, whole cost.")

    class Meta:
        indexes = [models.Index(fields=["hour"]), models.Index(fields=["cluster", "hour"])]


class UnplacedUsage(models.Model):
    """Usage that got no share of any cost: with no cluster and no deployment for its model and
    region, or served on a cluster rented to another customer. Reported, never hidden."""

    class Reason(models.TextChoices):
        NO_DEPLOYMENT = "no_deployment"
        RENTED_TO_OTHER_CUSTOMER = "rented_to_other_customer"

    hour = models.DateTimeField()
    customer_id = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    region = models.CharField(max_length=64)
    tokens = models.BigIntegerField()
    reason = models.CharField(max_length=32, choices=Reason.choices, db_default=Reason.NO_DEPLOYMENT)
    cluster = models.CharField(max_length=64, db_default="")

    class Meta:
        indexes = [models.Index(fields=["hour"])]


class UnpricedClusterHour(models.Model):
    """A leased cluster-hour with no lease in force: not priced (never at 0), its usage not
    allocated. Reported until a lease covers it and the hour is allocated again."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="+")
    hour = models.DateTimeField()
    tokens = models.BigIntegerField()
    reason = models.CharField(max_length=32, default="no_lease_in_force")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "hour"], name="unpriced_cluster_hour_once")]
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
