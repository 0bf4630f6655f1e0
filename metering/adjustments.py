"""Usage adjustments into the ledger (DESIGN.md §6): void or replace an accepted event,
as a new entry, never an edit.

An adjustment is applied in the transaction that records it: the difference it makes
to the event's token fields goes into the rollup of the event's own hour, so
`verify_projections` keeps holding. Locks, in this order:
- the customer row, FOR KEY SHARE: a finalization holds it FOR UPDATE, so an adjustment
  is either in the usage an invoice snapshots or numbered after its
  `adjustments_through` (billing re-rates it; late usage never bills it);
- an advisory lock on (customer, adjustment_id): two sends of one id, one winner;
- the event's key row, FOR UPDATE: an event's adjustments apply one at a time, numbered.

The finance audit log is billing's; every adjustment is recorded there too.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from billing.services.audit import audit_record
from metering.adjustment_rules import UsageAdjustmentIn
from metering.consumer.steps import AdjustmentAccepted, Coordinates, Rejected
from metering.models import DeadLetter, UsageAdjustment, UsageDuplicate
from metering.services import segment_start_sql
from metering.token_classes import FIELDS as TOKEN_FIELDS

REST_TOPIC = "rest:/usage-adjustments"  # not a legal Kafka topic name, so never a real one
GROUP = ("model", "service_tier", "region", "cluster", "occurred_at")


@dataclass(frozen=True)
class AdjustmentOutcome:
    """What became of one adjustment: `applied` (recorded now), `repeat` (an exact repeat of
    `adjustment`, counted), `replayed` (this very element was recorded before: nothing
    done), `conflict` (another payload under an accepted id: kept aside) or `refused`
    (the event is unknown or already voided)."""

    status: str
    adjustment: UsageAdjustment | None = None
    reason: str = ""
    message: str = ""

    def rejection(self, item: AdjustmentAccepted) -> Rejected | None:
        """The dead letter of a conflict or a refusal."""
        if self.status not in ("conflict", "refused"):
            return None
        conflict = self.status == "conflict"
        return Rejected("conflict" if conflict else "invalid", self.reason,
                        {"adjustment_id" if conflict else "event_id": [self.message]},
                        item.source, item.received_at, item.key, payload=item.adjustment.payload(),
                        existing=adjustment_payload(self.adjustment) if conflict else None)


@dataclass(frozen=True)
class AdjustmentResult:
    """How many adjustments of a batch had each outcome (replays are not counted)."""

    applied: int = 0
    repeat: int = 0
    conflict: int = 0
    refused: int = 0

    def __add__(self, other: "AdjustmentResult") -> "AdjustmentResult":
        return AdjustmentResult(self.applied + other.applied, self.repeat + other.repeat,
                                self.conflict + other.conflict, self.refused + other.refused)


def adjustment_payload(row: UsageAdjustment) -> dict:
    return UsageAdjustmentIn(adjustment_id=row.adjustment_id, customer_id=row.customer_id, event_id=row.event_id,
                             action=row.action, replacement=row.replacement, reason=row.reason).payload()


def rest_source() -> Coordinates:
    """Coordinates for an adjustment that came over REST: unique like a Kafka element's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('metering_rest_source_offset_seq')")
        return Coordinates(REST_TOPIC, 0, cursor.fetchone()[0], -1)


def _recorded_before(source: Coordinates) -> bool:
    """This element was settled by an earlier pass over its message (a replay)."""
    at = {"source_topic": source.topic, "source_partition": source.partition, "source_offset": source.offset,
          "source_index": source.index}
    return any(model.objects.filter(**at).exists() for model in (UsageAdjustment, UsageDuplicate, DeadLetter))


def _event_state(customer_id: str, event_id: str) -> dict | None:
    """The event's group and its token fields as its adjustments so far leave them, and
    whether one voided it; None if no such event was accepted. Locks its key row."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ledger_id, occurred_at FROM metering_usage_event_key "
                       "WHERE customer_id = %s AND event_id = %s FOR UPDATE", [customer_id, event_id])
        key = cursor.fetchone()
        if key is None:
            return None
        cursor.execute(f"SELECT {', '.join(GROUP)}, {', '.join(TOKEN_FIELDS)} FROM metering_usage_event "
                       "WHERE id = %s AND occurred_at = %s", key)
        row = cursor.fetchone()
        cursor.execute(f"SELECT count(*), coalesce(bool_or(action = 'void'), false), "
                       f"{', '.join(f'coalesce(sum({name}), 0)::bigint' for name in TOKEN_FIELDS)} "
                       "FROM metering_usage_adjustment WHERE customer_id = %s AND event_id = %s",
                       [customer_id, event_id])
        count, voided, *deltas = cursor.fetchone()
    tokens = {name: value + delta for name, value, delta in zip(TOKEN_FIELDS, row[len(GROUP):], deltas)}
    return {"group": dict(zip(GROUP, row[:len(GROUP)])), "tokens": tokens, "count": count, "voided": voided}


HOUR_OF_EVENT = "date_trunc('hour', %(at)s::timestamptz, 'UTC')"


def _rollup_add(row: UsageAdjustment) -> None:
    """Add the adjustment to the rollup of the event's hour and to its usage segment; a
    group whose last event is voided leaves the rollups (they hold groups with events
    only), its segment stays with zero events."""
    key = {"customer_id": row.customer_id, "model": row.model, "service_tier": row.service_tier,
           "region": row.region, "cluster": row.cluster, "at": row.occurred_at, "events": row.events,
           **{name: getattr(row, name) for name in TOKEN_FIELDS}}
    where = ("customer_id = %(customer_id)s AND model = %(model)s AND service_tier = %(service_tier)s "
             "AND region = %(region)s AND cluster = %(cluster)s AND hour = " + HOUR_OF_EVENT)
    sets = ", ".join(f"{name} = {name} + %({name})s" for name in TOKEN_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE metering_hourly_rollup SET events = events + %(events)s, {sets} "
                       f"WHERE {where} AND events + %(events)s > 0", key)
        if cursor.rowcount == 0:
            cursor.execute(f"DELETE FROM metering_hourly_rollup WHERE {where} AND events + %(events)s = 0", key)
        if cursor.rowcount != 1:
            raise RuntimeError(f"No hourly rollup holds event {row.customer_id}/{row.event_id}: "
                               "rebuild the rollups (rebuild_projections) before adjusting it.")
        cursor.execute(f"UPDATE metering_usage_segment SET events = events + %(events)s, {sets} "
                       "WHERE customer_id = %(customer_id)s AND model = %(model)s AND service_tier = %(service_tier)s "
                       f"AND cluster = %(cluster)s AND starts_at = {segment_start_sql(HOUR_OF_EVENT)}", key)
        if cursor.rowcount != 1:
            raise RuntimeError(f"No usage segment holds event {row.customer_id}/{row.event_id}: "
                               "rebuild the projections (rebuild_projections) before adjusting it.")


def _deltas(adjustment: UsageAdjustmentIn, tokens: dict[str, int]) -> dict[str, int]:
    after = adjustment.replacement or dict.fromkeys(TOKEN_FIELDS, 0)
    return {name: after[name] - tokens[name] for name in TOKEN_FIELDS}


@transaction.atomic
def adjustment_apply(*, adjustment: UsageAdjustmentIn, source: Coordinates, actor: str,
                     as_of: datetime) -> AdjustmentOutcome:
    """Record one adjustment and apply it to the rollups, or say why not."""
    if source.topic != REST_TOPIC and _recorded_before(source):
        return AdjustmentOutcome("replayed")
    customer_id, event_id = adjustment.customer_id, adjustment.event_id
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM metering_customer WHERE customer_id = %s FOR KEY SHARE", [customer_id])
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                       [f"usage adjustment {customer_id}\x1f{adjustment.adjustment_id}"])
    first = UsageAdjustment.objects.filter(customer_id=customer_id, adjustment_id=adjustment.adjustment_id).first()
    if first is not None:
        return _repeat(adjustment, first, source, as_of)
    state = _event_state(customer_id, event_id)
    if state is None:
        return AdjustmentOutcome("refused", reason="adjustment_event_unknown",
                                 message=f"No accepted event '{event_id}' of customer '{customer_id}'.")
    if state["voided"]:
        return AdjustmentOutcome("refused", reason="adjustment_event_voided",
                                 message=f"Event '{event_id}' is already voided.")
    row = UsageAdjustment.objects.create(
        adjustment_id=adjustment.adjustment_id, customer_id=customer_id, event_id=event_id,
        sequence=state["count"] + 1, action=adjustment.action, replacement=adjustment.replacement,
        reason=adjustment.reason, actor=actor, recorded_at=as_of, **state["group"],
        events=-1 if adjustment.action == UsageAdjustment.Action.VOID else 0,
        **_deltas(adjustment, state["tokens"]), source_topic=source.topic, source_partition=source.partition,
        source_offset=source.offset, source_index=source.index)
    _rollup_add(row)
    audit_record(actor=actor, action=f"usage_adjustment.{adjustment.action}", obj=row,
                 before={"event": f"{customer_id}/{event_id}", **state["tokens"]},
                 after={**adjustment.payload(), "sequence": row.sequence}, at=as_of)
    return AdjustmentOutcome("applied", row)


def _repeat(adjustment: UsageAdjustmentIn, first: UsageAdjustment, source: Coordinates,
            as_of: datetime) -> AdjustmentOutcome:
    if adjustment_payload(first) != adjustment.payload():
        return AdjustmentOutcome("conflict", first, reason="conflicting_adjustment",
                                 message="An adjustment with this adjustment_id and a different payload was "
                                         "already accepted.")
    if source.topic != REST_TOPIC:
        UsageDuplicate.objects.create(customer_id=first.customer_id, event_id=first.event_id,
                                      adjustment_id=first.adjustment_id, received_at=as_of,
                                      source_topic=source.topic, source_partition=source.partition,
                                      source_offset=source.offset, source_index=source.index)
    return AdjustmentOutcome("repeat", first)


def adjustments_apply(*, accepted: Sequence[AdjustmentAccepted], as_of: datetime
                      ) -> tuple[AdjustmentResult, list[Rejected]]:
    """The adjustments of a consumer batch, in the order they were produced (after the
    batch's events, so an event and its correction may share a batch). Returns the
    counts and the dead letters of conflicts and refusals, for the caller to record."""
    counts = {"applied": 0, "repeat": 0, "conflict": 0, "refused": 0, "replayed": 0}
    rejected = []
    for item in accepted:
        outcome = adjustment_apply(adjustment=item.adjustment, source=item.source, actor=f"kafka:{item.source.topic}",
                                   as_of=as_of)
        counts[outcome.status] += 1
        if (rejection := outcome.rejection(item)) is not None:
            rejected.append(rejection)
    return AdjustmentResult(counts["applied"], counts["repeat"], counts["conflict"], counts["refused"]), rejected

