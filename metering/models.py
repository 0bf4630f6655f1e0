"""Customers, the model catalog, API keys and the usage ledger with its projections.

Invariants and where they are enforced:
- The ledger (`UsageEvent`) is append-only: a Postgres trigger rejects UPDATE and
  DELETE on every partition (migration 0002), whatever the client.
- The ledger is range-partitioned by month on `occurred_at`; partitions are created
  ahead by `services.ledger_partitions_ensure` (consumer, beat, migrate).
- (customer_id, event_id) is unique over all time: the primary key of
  `UsageEventKey`, which a batch claims before anything reaches the ledger
  (a partitioned table cannot hold a unique index without the partition key).
- Every Kafka message element is recorded at most once: unique (topic, partition,
  offset, index) on ledger keys, duplicates and dead letters, so a replay is a no-op.
- `HourlyRollup` is a projection of the ledger, updated in the same transaction as
  the append; `verify_projections` recomputes it and must find no difference.
- An event's token parts never exceed their totals (cached + cache writes + uncached
  audio ≤ input, audio output and reasoning ≤ output): CHECK constraints on the ledger
  (migration 0003) behind the validator's field errors.
- Service tiers are rows of the catalog (`ServiceTier`, the first five seeded by
  migration 0003); events, prices and invoice lines name them by `name`.
- A correction is a new entry (`UsageAdjustment`, append-only by the same trigger,
  migration 0004) that names an accepted event and carries the change it makes to the
  event's token fields; the rollups take it in the event's own hour. (customer_id,
  adjustment_id) is unique, and so is each (customer_id, event_id, sequence): an event's
  adjustments are numbered 1, 2, ... under the lock of its key row.
- `UsageSegment` is a second projection of the ledger, updated in the same transaction
  as the append and each adjustment: the sums of a (customer, model, service tier,
  cluster) over a stretch that no month start, price, model tier or rental term cuts
  (`UsageBoundary`). Adding a boundary splits the stretch it falls in under a table
  lock (`services.usage_boundary_add`); `verify_projections` compares it too.
"""

from django.db import models
from django.db.models import Q


class Customer(models.Model):
    customer_id = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="USD")
    email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer_id"]

    def __str__(self):
        return f"{self.customer_id} ({self.name})"


class CatalogModel(models.Model):
    """A served model. Its model tier over time is in `ModelTierChange`."""

    name = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "model"

    def __str__(self):
        return self.name


class ModelTierChange(models.Model):
    """From `effective_from` on, usage of `model` is priced by `tier`. Usage is priced by
    the tier its model had when it was served, so changes are kept, never edited."""

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="tier_changes")
    tier = models.SlugField(max_length=32)
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="model_tier_change_once_per_instant")
        ]

    def __str__(self):
        return f"{self.model.name} → {self.tier} from {self.effective_from:%Y-%m-%d %H:%M}"


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        INGEST = "ingest"
        ADMIN = "admin"
        CUSTOMER = "customer"

    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(scope="customer", customer__isnull=False) | (~Q(scope="customer") & Q(customer__isnull=True)),
                name="api_key_customer_iff_customer_scope",
            )
        ]

    def __str__(self):
        return f"{self.prefix}… ({self.scope}{': ' + self.name if self.name else ''})"

    @property
    def actor(self) -> str:
        """How audit records and documents name what this key did."""
        return f"api-key:{self.prefix} {self.name}".strip()


class SourceCoordinates(models.Model):
    """Where an element came from: Kafka topic, partition, offset and array index
    (-1 for a message that is not an array). Unique, so a replay records nothing twice."""

    source_topic = models.CharField(max_length=249)
    source_partition = models.IntegerField()
    source_offset = models.BigIntegerField()
    source_index = models.IntegerField()

    class Meta:
        abstract = True


class ServiceTier(models.Model):
    """A service tier events may name and price books price (`standard`, `batch`, ...)."""

    name = models.SlugField(max_length=16, unique=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "metering_service_tier"
        ordering = ["id"]

    def __str__(self):
        return self.name


class UsageEvent(SourceCoordinates):
    """One served request, as accepted into the append-only ledger.

    The table is created by raw SQL (migration 0002): PRIMARY KEY (id, occurred_at),
    PARTITION BY RANGE (occurred_at), and the append-only trigger. `id` comes from a
    sequence and is unique on its own; Django treats it as the key.
    """

    id = models.BigIntegerField(primary_key=True)
    customer_id = models.CharField(max_length=64)
    event_id = models.CharField(max_length=128)
    model = models.CharField(max_length=128)
    occurred_at = models.DateTimeField(help_text="The event's timestamp: when the request was served.")
    received_at = models.DateTimeField(help_text="When the message reached Kafka.")
    ingested_at = models.DateTimeField(help_text="When the ledger appended it.")
    input_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField(db_default=0)
    cache_write_long_tokens = models.BigIntegerField(db_default=0)
    audio_input_tokens = models.BigIntegerField(db_default=0)
    audio_output_tokens = models.BigIntegerField(db_default=0)
    reasoning_tokens = models.BigIntegerField(db_default=0)
    service_tier = models.CharField(max_length=16)
    region = models.CharField(max_length=64, blank=True)
    cluster = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    provider_usage = models.JSONField(null=True, blank=True,
                                      help_text="The provider's usage object the token fields were read from.")

    class Meta:
        db_table = "metering_usage_event"
        ordering = ["-occurred_at"]

    def __str__(self):
        return f"{self.customer_id}/{self.event_id}"


class UsageEventKey(SourceCoordinates):
    """The deduplication key of every accepted event, and the digest of its payload."""

    pk = models.CompositePrimaryKey("customer_id", "event_id")
    customer_id = models.CharField(max_length=64)
    event_id = models.CharField(max_length=128)
    digest = models.BinaryField(max_length=16)
    ledger_id = models.BigIntegerField()
    occurred_at = models.DateTimeField()

    class Meta:
        db_table = "metering_usage_event_key"


class UsageDuplicate(SourceCoordinates):
    """An exact repeat of an accepted event, or of an accepted adjustment (`adjustment_id`
    set; `event_id` is then the adjusted event): dropped, counted here."""

    customer_id = models.CharField(max_length=64)
    event_id = models.CharField(max_length=128)
    adjustment_id = models.CharField(max_length=128, blank=True, db_default="")
    received_at = models.DateTimeField()

    class Meta:
        db_table = "metering_usage_duplicate"
        constraints = [
            models.UniqueConstraint(
                fields=["source_topic", "source_partition", "source_offset", "source_index"],
                name="usage_duplicate_once_per_element",
            )
        ]


class DeadLetter(SourceCoordinates):
    """An element the ledger did not apply: invalid, undecodable, or a conflicting repeat."""

    class Kind(models.TextChoices):
        INVALID = "invalid"
        UNDECODABLE = "undecodable"
        CONFLICT = "conflict"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.CharField(max_length=64, help_text="Stable code of the first failed rule.")
    errors = models.JSONField(default=dict, help_text="Field → messages.")
    customer_id = models.CharField(max_length=64, blank=True)
    event_id = models.CharField(max_length=128, blank=True)
    payload = models.JSONField(null=True, blank=True, help_text="The element as received, when it was JSON.")
    raw = models.TextField(blank=True, help_text="The undecodable bytes, base64.")
    existing_payload = models.JSONField(null=True, blank=True, help_text="For conflicts: the event already accepted.")
    received_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "metering_dead_letter"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_topic", "source_partition", "source_offset", "source_index"],
                name="dead_letter_once_per_element",
            )
        ]
        indexes = [models.Index(fields=["kind", "-id"]), models.Index(fields=["customer_id", "-id"])]

    def __str__(self):
        return f"{self.kind}: {self.reason} ({self.customer_id}/{self.event_id})"


class UsageConflict(DeadLetter):
    """Conflicting duplicates, shown apart in admin."""

    class Meta:
        proxy = True


class UsageAdjustment(SourceCoordinates):
    """A void or a replacement of an accepted event's token fields (DESIGN.md §6).

    It keeps the event's group (model, service tier, region, cluster, `occurred_at`) and
    the difference it makes: `events` (-1 for a void, 0 for a replacement) and one delta
    per token field, so a projection adds it like an event. Adjustments over REST carry
    coordinates of their own (topic `rest:/usage-adjustments`, offsets from a sequence)."""

    class Action(models.TextChoices):
        VOID = "void"
        REPLACE = "replace"

    id = models.BigAutoField(primary_key=True)
    adjustment_id = models.CharField(max_length=128)
    customer_id = models.CharField(max_length=64)
    event_id = models.CharField(max_length=128)
    sequence = models.PositiveIntegerField(help_text="1 for the event's first adjustment, then 2, ...")
    action = models.CharField(max_length=8, choices=Action.choices)
    replacement = models.JSONField(null=True, blank=True, help_text="The token fields after a replacement.")
    reason = models.CharField(max_length=500)
    actor = models.CharField(max_length=150, help_text="The API key or the Kafka topic it came by.")
    recorded_at = models.DateTimeField()
    occurred_at = models.DateTimeField(help_text="The adjusted event's timestamp: the hour it applies in.")
    model = models.CharField(max_length=128)
    service_tier = models.CharField(max_length=16)
    region = models.CharField(max_length=64, blank=True)
    cluster = models.CharField(max_length=64, blank=True)
    events = models.SmallIntegerField(help_text="-1 for a void, 0 for a replacement.")
    input_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField()
    cache_write_long_tokens = models.BigIntegerField()
    audio_input_tokens = models.BigIntegerField()
    audio_output_tokens = models.BigIntegerField()
    reasoning_tokens = models.BigIntegerField()

    class Meta:
        db_table = "metering_usage_adjustment"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["customer_id", "adjustment_id"], name="usage_adjustment_once"),
            models.UniqueConstraint(fields=["customer_id", "event_id", "sequence"],
                                    name="usage_adjustment_sequence_once"),
            models.UniqueConstraint(fields=["source_topic", "source_partition", "source_offset", "source_index"],
                                    name="usage_adjustment_once_per_element"),
            models.CheckConstraint(condition=Q(action="void", events=-1, replacement__isnull=True)
                                   | Q(action="replace", events=0, replacement__isnull=False),
                                   name="usage_adjustment_action_shape"),
        ]
        indexes = [models.Index(fields=["customer_id", "occurred_at"]), models.Index(fields=["occurred_at"])]

    def __str__(self):
        return f"{self.action} {self.customer_id}/{self.event_id} ({self.adjustment_id})"


class TokenSums(models.Model):
    """Events and the sums of their token fields (`token_classes.FIELDS`): what a projection
    of the ledger holds per group."""

    events = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField(db_default=0)
    cache_write_long_tokens = models.BigIntegerField(db_default=0)
    audio_input_tokens = models.BigIntegerField(db_default=0)
    audio_output_tokens = models.BigIntegerField(db_default=0)
    reasoning_tokens = models.BigIntegerField(db_default=0)

    class Meta:
        abstract = True


class HourlyRollup(TokenSums):
    """Events and token sums per (customer, model, service tier, region, cluster, hour).

    The sums are of the event's fields, totals and parts (`input_tokens` includes the
    cached ones); `metering.token_classes.priced` turns them into priced classes.
    """

    customer_id = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    service_tier = models.CharField(max_length=16)
    region = models.CharField(max_length=64, blank=True)
    cluster = models.CharField(max_length=64, blank=True)
    hour = models.DateTimeField()

    class Meta:
        db_table = "metering_hourly_rollup"
        ordering = ["hour"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer_id", "model", "service_tier", "region", "cluster", "hour"],
                name="hourly_rollup_one_row_per_group",
            ),
            models.CheckConstraint(condition=Q(events__gt=0), name="hourly_rollup_events_positive"),
        ]
        indexes = [models.Index(fields=["hour"]), models.Index(fields=["customer_id", "hour"])]


class UsageBoundary(models.Model):
    """An instant where the price of usage may change: a price book's or a model tier's
    `effective_from`, a rental's start or end (month starts are boundaries without a row).
    `UsageSegment` stretches never cross one."""

    at = models.DateTimeField(unique=True)

    class Meta:
        db_table = "metering_usage_boundary"
        ordering = ["at"]

    def __str__(self):
        return self.at.isoformat()


class UsageSegment(TokenSums):
    """Events and token sums per (customer, model, service tier, cluster) over the stretch
    from `starts_at` (a month start or a `UsageBoundary`) to the next boundary: the usage
    a live balance rates, a few rows per customer and month rather than one per hour."""

    customer_id = models.CharField(max_length=64)
    starts_at = models.DateTimeField()
    model = models.CharField(max_length=128)
    service_tier = models.CharField(max_length=16)
    cluster = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "metering_usage_segment"
        ordering = ["customer_id", "starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["customer_id", "starts_at", "model", "service_tier", "cluster"],
                                    name="usage_segment_one_row_per_group"),
            models.CheckConstraint(condition=Q(events__gte=0), name="usage_segment_events_not_negative"),
        ]
        indexes = [models.Index(fields=["starts_at"])]


class ConsumerWatermark(models.Model):
    """Per partition of a topic: the last time a ledger consumer had read it up to its high
    watermark and written what it read. Every event produced to the partition before
    `caught_up_at` is in the ledger, so the oldest of a topic's rows is the instant up to
    which balances are exact."""

    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    caught_up_at = models.DateTimeField()

    class Meta:
        db_table = "metering_consumer_watermark"
        constraints = [models.UniqueConstraint(fields=["topic", "partition"], name="consumer_watermark_per_partition")]
