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

from metering.token_classes import priced

# Flex (cheap, best-effort capacity) takes a share of what would otherwise be standard work.
SERVICE_TIER_WEIGHTS = {"standard": 0.74, "batch": 0.15, "priority": 0.05, "flex": 0.06}
REGIONS = {"us-east": ("iad-h100-a", "iad-b200-a", ""), "eu-west": ("ams-mi300x-a", "ams-trn2-a", "")}


@dataclass(frozen=True)
class Dedicated:
    """A cluster one customer rents for the last `last` of the traffic's range (dedicated
    capacity, DESIGN.md §2): from then on the gateway tags that customer's requests routed to
    a region the cluster serves with it, and sends no one else's there — their requests that
    would have been tagged with it go untagged, for the deployment map to place (it skips
    clusters rented to another customer). It draws nothing from the generator, so the rest
    of the traffic is what it was."""

    customer: str
    cluster: str
    last: timedelta


@dataclass(frozen=True)
class Shape:
    """How one model's requests look: lognormal input and output token counts, the cached
    share of the input drawn from `cached_shares`, and where they are served: region →
    (weight, clusters the gateway tags; "" for untagged, placed by the deployment map).

    The newer token classes (DESIGN.md §1), all off by default so that traffic shaped
    without them is what it was: of the input not read from the cache, a share drawn from
    `cache_write_shares` is written to the cache for 5 minutes and then a share drawn from
    `cache_write_long_shares` of what is left for 1 hour; `audio_rate` of the requests are
    speech, whose remaining uncached input is audio for a share drawn from
    `audio_input_shares` and whose output is audio for one from `audio_output_shares`; the
    reasoning part of the output is drawn from `reasoning_shares`. A class whose shares are
    all 0 draws nothing from the generator."""

    input_mu: float = 7.0
    input_sigma: float = 1.0
    output_mu: float = 5.3
    output_sigma: float = 0.9
    cached_shares: tuple[float, ...] = (0, 0, 0.3, 0.6, 0.9)
    routes: dict[str, tuple[float, tuple[str, ...]]] | None = None  # None: any region, REGIONS' clusters
    cache_write_shares: tuple[float, ...] = (0,)
    cache_write_long_shares: tuple[float, ...] = (0,)
    audio_rate: float = 0.0
    audio_input_shares: tuple[float, ...] = (1,)
    audio_output_shares: tuple[float, ...] = (1,)
    reasoning_shares: tuple[float, ...] = (0,)
    dedicated: Dedicated | None = None


DEFAULT_SHAPE = Shape()


@dataclass
class Tally:
    """What a correct ledger holds after consuming every message."""

    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    invalid: int = 0
    undecodable: int = 0
    tokens: Counter = field(default_factory=Counter)  # (model, priced token class) → tokens
    reasoning: Counter = field(default_factory=Counter)  # model → reasoning tokens (a part of output)

    def add(self, event: dict) -> None:
        self.accepted += 1
        for token_class, count in priced(event).items():
            if count:
                self.tokens[(event["model"], token_class)] += count
        if event.get("reasoning_tokens"):
            self.reasoning[event["model"]] += event["reasoning_tokens"]


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
    service_tier_weights: dict[str, float] = field(default_factory=lambda: dict(SERVICE_TIER_WEIGHTS))
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
        tiers = self.service_tier_weights
        served_at = self._instant()
        event = {
            "event_id": f"req-{self.seed}-{self.serial:09d}",
            "customer_id": customer,
            "model": model,
            "timestamp": served_at.isoformat().replace("+00:00", "Z"),
            "input_tokens": input_tokens,
            "cached_input_tokens": int(input_tokens * self.rng.choice(shape.cached_shares)),
            "output_tokens": int(self.rng.lognormvariate(shape.output_mu, shape.output_sigma)),
            "service_tier": self.rng.choices(list(tiers), list(tiers.values()))[0],
            "region": region,
        }
        cluster = self._dedicated(shape.dedicated, customer, clusters, self.rng.choice(clusters), served_at)
        if cluster:
            event["cluster"] = cluster
        event.update(self._parts(shape, event))
        return event

    def _dedicated(self, dedicated: Dedicated | None, customer: str, clusters: tuple[str, ...], cluster: str,
                   served_at: datetime) -> str:
        """The cluster the gateway tags once a dedicated cluster is rented (see Dedicated)."""
        if dedicated is None or dedicated.cluster not in clusters or served_at < self.end - dedicated.last:
            return cluster
        if customer == dedicated.customer:
            return dedicated.cluster
        return "" if cluster == dedicated.cluster else cluster

    def _share(self, shares: tuple[float, ...]) -> float:
        """A share drawn from `shares`; none drawn (the sequence unchanged) when all are 0."""
        return self.rng.choice(shares) if any(shares) else 0.0

    def _parts(self, shape: Shape, event: dict) -> dict[str, int]:
        """The newer token fields of one request (DESIGN.md §1), only those that are not 0:
        a gateway that knows nothing of them sends none, and an event means the same either way."""
        left = event["input_tokens"] - event["cached_input_tokens"]
        parts = {"cache_write_tokens": int(left * self._share(shape.cache_write_shares))}
        left -= parts["cache_write_tokens"]
        parts["cache_write_long_tokens"] = int(left * self._share(shape.cache_write_long_shares))
        left -= parts["cache_write_long_tokens"]
        if shape.audio_rate and self.rng.random() < shape.audio_rate:
            parts["audio_input_tokens"] = int(left * self._share(shape.audio_input_shares))
            parts["audio_output_tokens"] = int(event["output_tokens"] * self._share(shape.audio_output_shares))
        text_output = event["output_tokens"] - parts.get("audio_output_tokens", 0)
        parts["reasoning_tokens"] = int(text_output * self._share(shape.reasoning_shares))
        return {name: count for name, count in parts.items() if count}

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
