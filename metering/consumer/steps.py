"""The consumer's pure steps: decode Kafka records, validate every element, and
split them into accepted events and rejections. No Django, no I/O, no clock.

Nothing a producer can put in a record makes `check` raise: undecodable or too deeply
nested bytes, an absurd record timestamp and every invalid element become rejections,
and a rejection's payload is cut to DOCUMENT_DEPTH_MAX levels so it can always be
serialized and stored as a dead letter.
"""

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kafka.structs import OffsetAndMetadata, TopicPartition

from metering.adjustment_rules import UsageAdjustmentIn, adjustment_validate, is_adjustment
from metering.schemas import (
    DOCUMENT_DEPTH_MAX, Catalog, Invalid, Rules, UsageEventIn, event_accept_fast, event_validate, json_loads,
    wire_elements,
)

BATCH_EVENTS_MAX = 1_000
MESSAGE_LEVEL = -1  # source index of a message that is not an array


@dataclass(frozen=True, slots=True)
class Coordinates:
    topic: str
    partition: int
    offset: int
    index: int


@dataclass(frozen=True, slots=True)
class Accepted:
    event: UsageEventIn
    source: Coordinates
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AdjustmentAccepted:
    """A valid usage adjustment (an element with `adjustment_id`); the ledger decides
    whether the event it names can take it."""

    adjustment: UsageAdjustmentIn
    source: Coordinates
    received_at: datetime
    key: bytes | None


@dataclass(frozen=True, slots=True)
class Rejected:
    kind: str  # "invalid" | "undecodable"
    reason: str
    errors: dict
    source: Coordinates
    received_at: datetime
    key: bytes | None
    payload: object = None
    raw: bytes | None = None
    existing: dict | None = None  # a conflict's accepted payload

    @property
    def customer_id(self) -> str:
        value = self.payload.get("customer_id") if isinstance(self.payload, dict) else None
        return value[:64] if isinstance(value, str) else ""

    @property
    def event_id(self) -> str:
        value = self.payload.get("event_id") if isinstance(self.payload, dict) else None
        return value[:128] if isinstance(value, str) else ""

    def dlq_value(self) -> bytes:
        """What goes to the dead-letter topic: the reason and the element as received."""
        body = {
            "kind": self.kind, "reason": self.reason, "errors": self.errors,
            "source": {"topic": self.source.topic, "partition": self.source.partition,
                       "offset": self.source.offset, "index": self.source.index},
            "received_at": self.received_at.isoformat(),
        }
        if self.raw is not None:
            body["raw_base64"] = base64.b64encode(self.raw).decode()
        else:
            body["payload"] = self.payload
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Checked:
    accepted: list[Accepted]
    rejected: list[Rejected]
    adjustments: list[AdjustmentAccepted] = field(default_factory=list)

    def add(self, item: "Accepted | AdjustmentAccepted | Rejected") -> None:
        target = (self.accepted if isinstance(item, Accepted) else
                  self.adjustments if isinstance(item, AdjustmentAccepted) else self.rejected)
        target.append(item)

    @property
    def names_unknown(self) -> bool:
        """A rejection that a fresher catalog might turn into an acceptance."""
        return any(r.reason in {"customer_unknown", "model_unknown", "service_tier_unknown"} for r in self.rejected)


def received_at_of(record, *, now: datetime) -> datetime:
    if record.timestamp is None or record.timestamp < 0:
        return now
    try:
        return datetime.fromtimestamp(record.timestamp / 1000, UTC)
    except (OverflowError, ValueError, OSError):  # a timestamp past year 9999: treated as absent
        return now


def bounded(value: object) -> object:
    """A copy of a decoded JSON value with every container deeper than DOCUMENT_DEPTH_MAX
    replaced by None. Iterative: a rejected element may nest as deep as json could decode,
    deeper than json.dumps, Django or Postgres' jsonb input will follow."""
    root: list = [None]
    stack: list[tuple[object, list | dict, int | str, int]] = [(value, root, 0, 1)]
    while stack:
        source, target, slot, depth = stack.pop()
        if isinstance(source, dict | list) and depth > DOCUMENT_DEPTH_MAX:
            target[slot] = None
        elif isinstance(source, dict):
            target[slot] = copy = dict.fromkeys(source)
            stack.extend((item, copy, key, depth + 1) for key, item in source.items())
        elif isinstance(source, list):
            target[slot] = copy = [None] * len(source)
            stack.extend((item, copy, index, depth + 1) for index, item in enumerate(source))
        else:
            target[slot] = source
    return root[0]


def element_validate(element: object, *, catalog: Catalog, rules: Rules) -> UsageEventIn | UsageAdjustmentIn | Invalid:
    """An element of the usage topic is an event, or an adjustment if it has `adjustment_id`."""
    if is_adjustment(element):
        return adjustment_validate(element, catalog=catalog)
    return event_validate(element, catalog=catalog, rules=rules)


def _settled(verdict: UsageEventIn | UsageAdjustmentIn | Invalid, element: object, *, key: str | None, record,
             source: Coordinates, received_at: datetime) -> Accepted | AdjustmentAccepted | Rejected:
    """One element's verdict as an acceptance or a rejection; a valid event or adjustment
    of another customer than the message key is a `key_mismatch`."""
    if not isinstance(verdict, Invalid) and key is not None and verdict.customer_id != key:
        verdict = Invalid("key_mismatch", {"customer_id": [f"Differs from the message key '{key}'."]})
    if isinstance(verdict, Invalid):
        return Rejected("invalid", verdict.reason, verdict.errors, source, received_at, record.key,
                        payload=bounded(element))
    if isinstance(verdict, UsageAdjustmentIn):
        return AdjustmentAccepted(verdict, source, received_at, record.key)
    return Accepted(verdict, source, received_at)


# An element with more brackets than this is left to `check`'s own path: it may nest
# deep enough for json_loads to cut it, which depends on the whole document.
_FAST_BRACKETS_MAX = DOCUMENT_DEPTH_MAX


def _check_fast(record, *, received_at: datetime, rules: Rules, catalog: Catalog, checked: Checked) -> bool:
    """Settle a record on the compiled path (`event_accept_fast`) if it can; True if it did.

    A single event it does not accept, and a message it cannot split as an array, are
    left whole to `check`'s own path (False, nothing recorded). In an array it can
    split, an element it does not accept is decoded alone and judged by
    `element_validate`, as `check` would judge it inside the array."""
    value = record.value
    if value is None:
        return False
    if value[:1] != b"[":
        verdict = event_accept_fast(value, catalog=catalog, rules=rules)
        if verdict is None or (record.key is not None and verdict.customer_id != record.key.decode("utf-8", "replace")):
            return False
        checked.accepted.append(Accepted(verdict, Coordinates(record.topic, record.partition, record.offset,
                                                              MESSAGE_LEVEL), received_at))
        return True
    raws = wire_elements(value)
    if raws is None or len(raws) > BATCH_EVENTS_MAX:
        return False
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    settled: list[Accepted | AdjustmentAccepted | Rejected] = []
    for index, raw in enumerate(raws):
        source = Coordinates(record.topic, record.partition, record.offset, index)
        verdict, element = event_accept_fast(raw, catalog=catalog, rules=rules), None
        if verdict is None or (key is not None and verdict.customer_id != key):
            encoded = bytes(raw)
            if encoded.count(b"[") + encoded.count(b"{") > _FAST_BRACKETS_MAX:
                return False
            try:
                element = json.loads(encoded.decode())
            except ValueError:  # valid to the compiled decoder only: `check`'s own path decides
                return False
            if verdict is None:
                verdict = element_validate(element, catalog=catalog, rules=rules)
        settled.append(_settled(verdict, element, key=key, record=record, source=source, received_at=received_at))
    for item in settled:
        checked.add(item)
    return True


def check(records: Iterable, *, catalog: Catalog, lateness: timedelta, now: datetime) -> Checked:
    """Decode and validate each record; an array is checked element by element.

    Most records are settled by the compiled decoder (`_check_fast`); whatever it does
    not settle is decoded by `json_loads` and judged by `element_validate` below, which
    alone gives reasons."""
    checked = Checked([], [])
    rejected = checked.rejected
    for record in records:
        received_at = received_at_of(record, now=now)
        rules = Rules(arrived_at=received_at, lateness=lateness)
        if _check_fast(record, received_at=received_at, rules=rules, catalog=catalog, checked=checked):
            continue
        message = Coordinates(record.topic, record.partition, record.offset, MESSAGE_LEVEL)
        try:
            body = json_loads(record.value)
        except (TypeError, ValueError) as exc:  # None, bad UTF-8, bad JSON, brackets that never close
            reason = "empty_message" if record.value is None else "undecodable_json"
            rejected.append(Rejected("undecodable", reason, {"non_field_errors": [str(exc)]}, message,
                                     received_at, record.key, raw=record.value or b""))
            continue
        if isinstance(body, list) and len(body) > BATCH_EVENTS_MAX:
            errors = {"non_field_errors": [f"A batch holds at most {BATCH_EVENTS_MAX} events, got {len(body)}."]}
            rejected.append(Rejected("invalid", "batch_too_large", errors, message, received_at, record.key,
                                     raw=record.value))
            continue
        elements = enumerate(body) if isinstance(body, list) else ((MESSAGE_LEVEL, body),)
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        for index, element in elements:
            source = Coordinates(record.topic, record.partition, record.offset, index)
            checked.add(_settled(element_validate(element, catalog=catalog, rules=rules), element, key=key,
                                 record=record, source=source, received_at=received_at))
    return checked


def next_offsets(records: Iterable) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once a batch is durable: one past the last record."""
    highest: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        highest[tp] = max(highest.get(tp, -1), record.offset)
    return {tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in highest.items()}
