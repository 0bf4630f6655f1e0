"""Synthetic inference traffic for the demo, benchmarks and tests.

Deterministic for a seed. Besides valid events it mixes in exact duplicates,
conflicting duplicates (same event_id, other payload), invalid events and
undecodable messages, and keeps a tally of what the ledger must end up holding.
Each message carries the instant it "arrived" (a few seconds after the request was
served), used as the Kafka record timestamp.
"""

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SERVICE_TIER_WEIGHTS = {"standard": 0.80, "batch": 0.15, "priority": 0.05}
REGIONS = {"us-east": ("iad-h100-a", "iad-b200-a", ""), "eu-west": ("ams-mi300x-a", "ams-trn2-a", "")}


@dataclass(frozen=True)
class Shape:
    """How one model's requests look: lognormal input and output token counts, the cached
    share of the input drawn from `cached_shares`, and where they are served: region →
    (weight, clusters the gateway tags; "" for untagged, placed by the deployment map)."""

    input_mu: float = 7.0
    input_sigma: float = 1.0
    output_mu: float = 5.3
    output_sigma: float = 0.9
    cached_shares: tuple[float, ...] = (0, 0, 0.3, 0.6, 0.9)
    routes: dict[str, tuple[float, tuple[str, ...]]] | None = None  # None: any region, REGIONS' clusters


DEFAULT_SHAPE = Shape()


@dataclass
class Tally:
    """What a correct ledger holds after consuming every message."""

    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    invalid: int = 0
    undecodable: int = 0
    tokens: Counter = field(default_factory=Counter)  # (model, class) → tokens

    def add(self, event: dict) -> None:
        self.accepted += 1
        cached = event["cached_input_tokens"]
        self.tokens[(event["model"], "input")] += event["input_tokens"] - cached
        self.tokens[(event["model"], "cached_input")] += cached
        self.tokens[(event["model"], "output")] += event["output_tokens"]


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    timestamp_ms: int


@dataclass
class Traffic:
    customers: list[str]
    models: list[str]
    start: datetime
    end: datetime
    seed: int = 7
    duplicate_rate: float = 0.03
    conflict_rate: float = 0.002
    invalid_rate: float = 0.003
    model_weights: list[float] | None = None  # None: 45%, 35%, 20% of requests
    shapes: dict[str, Shape] = field(default_factory=dict)  # per model; DEFAULT_SHAPE otherwise
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        # A few customers carry most of the traffic, as in real life.
        self.customer_weights = [1 / (rank + 1) ** 1.1 for rank in range(len(self.customers))]
        self.model_weights = self.model_weights or [0.45, 0.35, 0.20][: len(self.models)] or [1.0]
        self.seen: dict[str, list[dict]] = {c: [] for c in self.customers}
        self.serial = 0

    def _instant(self) -> datetime:
        """Diurnal load: busier during the (UTC) working day."""
        span = (self.end - self.start).total_seconds()
        while True:
            moment = self.start + timedelta(seconds=self.rng.random() * span)
            hour = moment.hour + moment.minute / 60
            if self.rng.random() < 0.55 + 0.45 * math.sin(math.pi * max(0.0, min(1.0, (hour - 6) / 14))):
                return moment

    def _event(self, customer: str) -> dict:
        self.serial += 1
        model = self.rng.choices(self.models, self.model_weights[: len(self.models)])[0]
        shape = self.shapes.get(model, DEFAULT_SHAPE)
        input_tokens = int(self.rng.lognormvariate(shape.input_mu, shape.input_sigma)) + 1
        region, clusters = self._route(shape)
        event = {
            "event_id": f"req-{self.seed}-{self.serial:09d}",
            "customer_id": customer,
            "model": model,
            "timestamp": self._instant().isoformat().replace("+00:00", "Z"),
            "input_tokens": input_tokens,
            "cached_input_tokens": int(input_tokens * self.rng.choice(shape.cached_shares)),
            "output_tokens": int(self.rng.lognormvariate(shape.output_mu, shape.output_sigma)),
            "service_tier": self.rng.choices(list(SERVICE_TIER_WEIGHTS), list(SERVICE_TIER_WEIGHTS.values()))[0],
            "region": region,
        }
        cluster = self.rng.choice(clusters)
        if cluster:
            event["cluster"] = cluster
        return event

    def _route(self, shape: Shape) -> tuple[str, tuple[str, ...]]:
        if shape.routes is None:
            region = self.rng.choice(list(REGIONS))
            return region, REGIONS[region]
        regions = list(shape.routes)
        region = self.rng.choices(regions, [shape.routes[r][0] for r in regions])[0]
        return region, shape.routes[region][1]

    def _invalid(self, customer: str) -> dict:
        event = self._event(customer)
        breakage = self.rng.randrange(5)
        if breakage == 0:
            event["model"] = "gpt-unknown"
        elif breakage == 1:
            event["cached_input_tokens"] = event["input_tokens"] + 1
        elif breakage == 2:
            event["output_tokens"] = -5
        elif breakage == 3:
            event["timestamp"] = event["timestamp"][:19]  # no offset
        else:
            event["service_tier"] = "premium"  # not a tier of the catalog
        return event

    def elements(self, n: int):
        """n elements as (customer, element, served_at); updates the tally."""
        for _ in range(n):
            customer = self.rng.choices(self.customers, self.customer_weights)[0]
            roll, history = self.rng.random(), self.seen[customer]
            if roll < self.duplicate_rate and history:
                event = dict(self.rng.choice(history))
                self.tally.duplicates += 1
            elif roll < self.duplicate_rate + self.conflict_rate and history:
                original = self.rng.choice(history)  # same event_id, never the same payload
                event = dict(original, output_tokens=original["output_tokens"] + self.rng.randrange(1, 10_000))
                self.tally.conflicts += 1
            elif roll < self.duplicate_rate + self.conflict_rate + self.invalid_rate:
                event = self._invalid(customer)
                self.tally.invalid += 1
            else:
                event = self._event(customer)
                self.tally.add(event)
                if len(history) < 2_000:
                    history.append(event)
            served_at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            yield customer, event, served_at if served_at.tzinfo else served_at.replace(tzinfo=UTC)

    def _arrival_ms(self, served_at: datetime) -> int:
        return int((served_at + timedelta(seconds=self.rng.uniform(0.05, 20))).timestamp() * 1000)

    def messages(self, n: int, *, batch_size: int = 1, undecodable: int = 0):
        """n elements as Kafka messages: one event each, or arrays of up to batch_size per customer.

        Conflicts and duplicates repeat an earlier event of the same customer, so they
        land on the same partition after the original and the first one always wins.
        """
        pending: dict[str, list[tuple[dict, datetime]]] = {}
        for customer, event, served_at in self.elements(n):
            if batch_size == 1:
                yield Message(customer.encode(), json.dumps(event).encode(), self._arrival_ms(served_at))
                continue
            group = pending.setdefault(customer, [])
            group.append((event, served_at))
            if len(group) == batch_size:
                yield self._batch(customer, pending.pop(customer))
        for customer, group in pending.items():
            yield self._batch(customer, group)
        for index in range(undecodable):
            self.tally.undecodable += 1
            yield Message(self.customers[0].encode(), b"\xff{not json " + str(index).encode(), self._arrival_ms(self.end))

    def _batch(self, customer: str, group: list[tuple[dict, datetime]]) -> Message:
        served_at = max(s for _, s in group)
        return Message(customer.encode(), json.dumps([e for e, _ in group]).encode(), self._arrival_ms(served_at))


def messages_produce(producer, topic: str, messages, *, progress=None) -> int:
    """Send every message (record timestamp = arrival) and wait for all acks."""
    count = 0
    for message in messages:
        producer.send(topic, key=message.key, value=message.value, timestamp_ms=message.timestamp_ms)
        count += 1
        if progress is not None:
            progress(1)
    producer.flush()
    return count
