"""Writes to the usage ledger and its projections.

`ledger_append` is the one way events enter the ledger. It stages a batch with COPY
and then, in set-based SQL inside the caller's transaction, claims each
(customer_id, event_id), appends the winners, adds them to the hourly rollups and the
usage segments and records the repeats as duplicates or conflicts.
"""

import base64
import json
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import connection, transaction
from django.db.models import Q

from metering.consumer.steps import Accepted, Rejected
from config.api import DomainError, api_key_hash
from metering.models import ApiKey, CatalogModel, Customer, DeadLetter, ModelTierChange
from metering.schemas import UNSTORABLE
from metering.token_classes import FIELDS as TOKEN_FIELDS
from metering.token_classes import NEWER_FIELDS

TOKENS = ", ".join(TOKEN_FIELDS)
STAGE_COLUMNS = (
    "topic", "partition", "offset", "idx", "customer_id", "event_id", "digest", "model", "occurred_at",
    "received_at", *TOKEN_FIELDS, "service_tier", "region", "cluster", "metadata", "provider_usage",
)

STAGE_TYPES = (  # of STAGE_COLUMNS, for the binary COPY
    "text", "int4", "int8", "int4", "text", "text", "bytea", "text", "timestamptz", "timestamptz",
    *("int8" for _ in TOKEN_FIELDS), "text", "text", "text", "jsonb", "jsonb",
)

STAGE_CREATE = f"""
CREATE TEMP TABLE IF NOT EXISTS usage_stage (
    topic text NOT NULL, "partition" integer NOT NULL, "offset" bigint NOT NULL, idx integer NOT NULL,
    customer_id text NOT NULL, event_id text NOT NULL, digest bytea NOT NULL, model text NOT NULL,
    occurred_at timestamptz NOT NULL, received_at timestamptz NOT NULL,
    {", ".join(f"{name} bigint NOT NULL" for name in TOKEN_FIELDS)},
    service_tier text NOT NULL, region text NOT NULL, cluster text NOT NULL, metadata jsonb, provider_usage jsonb
) ON COMMIT DELETE ROWS
"""
# The staged rows that did not win their claim: the only ones that can be repeats (a
# winner's key carries its own coordinates). Usually a few % of the batch, so
# REPEATS_SQL probes the key index for those alone.
LOST_CREATE = "CREATE TEMP TABLE IF NOT EXISTS usage_stage_lost (LIKE usage_stage) ON COMMIT DELETE ROWS"

TOKEN_SUMS = "count(*), " + ", ".join(f"sum({name})::bigint" for name in TOKEN_FIELDS)
ROLLUP_GROUP = "customer_id, model, service_tier, region, cluster, date_trunc('hour', occurred_at, 'UTC')"
ROLLUP_COLUMNS = f"customer_id, model, service_tier, region, cluster, hour, events, {TOKENS}"
SEGMENT_COLUMNS = f"customer_id, starts_at, model, service_tier, cluster, events, {TOKENS}"


def segment_start_sql(hour: str) -> str:
    """SQL: the start of the usage segment holding `hour`: the latest boundary at or
    before it, or its month's start (the same rule as billing's `quantities_from_rows`)."""
    return (f"greatest(date_trunc('month', {hour}, 'UTC'), "
            f"(SELECT max(b.at) FROM metering_usage_boundary b WHERE b.at <= {hour}))")


def segment_upsert_sql(hourly: str) -> str:
    """SQL: add `hourly` (a relation of customer_id, model, service_tier, cluster, hour,
    events and the token sums) to the usage segments; returns (customer_id, starts_at)."""
    return f"""
    INSERT INTO metering_usage_segment AS g ({SEGMENT_COLUMNS})
    SELECT customer_id, {segment_start_sql("h.hour")}, model, service_tier, cluster, sum(events)::bigint,
           {", ".join(f"sum({name})::bigint" for name in TOKEN_FIELDS)}
    FROM {hourly} h
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (customer_id, starts_at, model, service_tier, cluster) DO UPDATE SET
        events = g.events + EXCLUDED.events,
        {", ".join(f"{name} = g.{name} + EXCLUDED.{name}" for name in TOKEN_FIELDS)}
    RETURNING customer_id, starts_at"""

APPEND_SQL = f"""
WITH candidates AS MATERIALIZED (  -- the ledger id drawn once per candidate, so a winner is found by it
    SELECT first.*, nextval('metering_usage_event_id_seq') AS ledger_id
    FROM (
        SELECT DISTINCT ON (customer_id, event_id) *
        FROM usage_stage
        ORDER BY customer_id, event_id, topic, "partition", "offset", idx
    ) first
), claimed AS (
    INSERT INTO metering_usage_event_key
        (customer_id, event_id, digest, ledger_id, occurred_at,
         source_topic, source_partition, source_offset, source_index)
    SELECT customer_id, event_id, digest, ledger_id, occurred_at, topic, "partition", "offset", idx
    FROM candidates
    ON CONFLICT DO NOTHING
    RETURNING customer_id, event_id, ledger_id, source_topic, source_partition, source_offset, source_index
), lost AS (  -- every staged row but the winners: the batch's repeats and replays are among them
    INSERT INTO usage_stage_lost
    SELECT s.* FROM usage_stage s
    WHERE NOT EXISTS (
        SELECT FROM claimed w
        WHERE w.customer_id = s.customer_id AND w.event_id = s.event_id AND w.source_topic = s.topic
          AND w.source_partition = s."partition" AND w.source_offset = s."offset" AND w.source_index = s.idx
    )
), appended AS (
    INSERT INTO metering_usage_event
        (id, source_topic, source_partition, source_offset, source_index, customer_id, event_id, model,
         occurred_at, received_at, {TOKENS}, service_tier, region, cluster, metadata, provider_usage)
    SELECT c.ledger_id, c.topic, c."partition", c."offset", c.idx, c.customer_id, c.event_id, c.model,
           c.occurred_at, c.received_at, {", ".join(f"c.{name}" for name in TOKEN_FIELDS)},
           c.service_tier, c.region, c.cluster, c.metadata, c.provider_usage
    FROM candidates c
    WHERE c.ledger_id IN (SELECT ledger_id FROM claimed)  -- a hash on one bigint, not a sort of two texts
    RETURNING customer_id, model, service_tier, region, cluster, occurred_at, {TOKENS}
), rolled AS (
    INSERT INTO metering_hourly_rollup AS r ({ROLLUP_COLUMNS})
    SELECT {ROLLUP_GROUP}, {TOKEN_SUMS}
    FROM appended
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (customer_id, model, service_tier, region, cluster, hour) DO UPDATE SET
        events = r.events + EXCLUDED.events,
        {", ".join(f"{name} = r.{name} + EXCLUDED.{name}" for name in TOKEN_FIELDS)}
), segmented AS ({segment_upsert_sql(f"""(
        SELECT customer_id, model, service_tier, cluster, date_trunc('hour', occurred_at, 'UTC') AS hour,
               count(*) AS events, {", ".join(f"sum({name}) AS {name}" for name in TOKEN_FIELDS)}
        FROM appended GROUP BY 1, 2, 3, 4, 5)""")}
), touched AS (  -- each customer and month whose usage changed, for the live balances
    SELECT DISTINCT customer_id, date_trunc('month', starts_at, 'UTC') AS month FROM segmented
)
SELECT (SELECT count(*) FROM appended),
       (SELECT coalesce(array_agg(customer_id), '{{}}') FROM touched),
       (SELECT coalesce(array_agg(month), '{{}}') FROM touched)
"""


def _payload_sql(alias: str, *, timestamp: str = "occurred_at") -> str:
    """The normalized event as jsonb, built from ledger-shaped columns: UsageEventIn.payload's
    fields, the newer token fields only where not 0."""
    newer = ", ".join(f"'{name}', NULLIF({alias}.{name}, 0)" for name in NEWER_FIELDS)
    return f"""jsonb_strip_nulls(jsonb_build_object(
        'event_id', {alias}.event_id, 'customer_id', {alias}.customer_id, 'model', {alias}.model,
        'timestamp', {alias}.{timestamp}, 'input_tokens', {alias}.input_tokens,
        'cached_input_tokens', {alias}.cached_input_tokens, 'output_tokens', {alias}.output_tokens,
        'service_tier', {alias}.service_tier, 'region', NULLIF({alias}.region, ''),
        'cluster', NULLIF({alias}.cluster, ''), 'metadata', {alias}.metadata, {newer},
        'provider_usage', {alias}.provider_usage))"""


REPEATS_SQL = f"""
WITH repeats AS (
    SELECT s.*, k.digest = s.digest AS exact, k.ledger_id, k.occurred_at AS original_at
    FROM usage_stage_lost s
    CROSS JOIN LATERAL (  -- an index probe per row that lost its claim, not a scan of every key
        SELECT * FROM metering_usage_event_key k0
        WHERE k0.customer_id = s.customer_id AND k0.event_id = s.event_id
    ) k
    WHERE (k.source_topic, k.source_partition, k.source_offset, k.source_index)
          IS DISTINCT FROM (s.topic, s."partition", s."offset", s.idx)
), duplicates AS (
    INSERT INTO metering_usage_duplicate
        (source_topic, source_partition, source_offset, source_index, customer_id, event_id, received_at)
    SELECT topic, "partition", "offset", idx, customer_id, event_id, received_at
    FROM repeats WHERE exact
    ON CONFLICT DO NOTHING
    RETURNING 1
), conflicts AS (
    INSERT INTO metering_dead_letter
        (source_topic, source_partition, source_offset, source_index, kind, reason, errors, customer_id,
         event_id, payload, raw, existing_payload, received_at, recorded_at)
    SELECT r.topic, r."partition", r."offset", r.idx, 'conflict', 'conflicting_duplicate',
           jsonb_build_object('event_id', jsonb_build_array(
               'An event with this event_id and a different payload was already accepted.')),
           r.customer_id, r.event_id, {_payload_sql("r")}, '',
           (SELECT {_payload_sql("e")} FROM metering_usage_event e
             WHERE e.id = r.ledger_id AND e.occurred_at = r.original_at),
           r.received_at, now()
    FROM repeats r WHERE NOT r.exact
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM duplicates), (SELECT count(*) FROM conflicts)
"""


@dataclass(frozen=True)
class AppendResult:
    appended: int = 0
    duplicates: int = 0
    conflicts: int = 0
    touched: frozenset[tuple[str, datetime]] = frozenset()  # (customer_id, month start) whose usage grew

    def __add__(self, other: "AppendResult") -> "AppendResult":
        return AppendResult(self.appended + other.appended, self.duplicates + other.duplicates,
                            self.conflicts + other.conflicts, self.touched | other.touched)


_partitions_known: set[date] = set()


def _month_start(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def _month_after(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


@transaction.atomic
def ledger_partitions_ensure(*, months: Iterable[date]) -> list[str]:
    """Create the monthly ledger partitions that do not exist yet; returns the new ones.

    An advisory lock serializes creators, so several consumers may call it at once.
    """
    wanted = sorted({date(m.year, m.month, 1) for m in months} - _partitions_known)
    created = []
    if not wanted:
        return created
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('metering_usage_event partitions'))")
        for month in wanted:
            name = f"metering_usage_event_y{month.year:04d}m{month.month:02d}"
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
            if not cursor.fetchone()[0]:
                cursor.execute(
                    f"CREATE TABLE {name} PARTITION OF metering_usage_event "
                    f"FOR VALUES FROM ('{month.isoformat()} 00:00+00') TO ('{_month_after(month).isoformat()} 00:00+00')"
                )
                created.append(name)
    transaction.on_commit(lambda: _partitions_known.update(wanted))
    return created


def ledger_partitions_ahead(*, as_of: datetime, months_ahead: int = 3, months_back: int = 2) -> list[str]:
    """Partitions for every month an event arriving around `as_of` may fall in."""
    month = _month_start(as_of)
    for _ in range(months_back):
        month = date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)
    months = []
    for _ in range(months_back + months_ahead + 1):
        months.append(month)
        month = _month_after(month)
    return ledger_partitions_ensure(months=months)


def _stage_rows(accepted: Sequence[Accepted]):
    for item in accepted:
        event, source = item.event, item.source
        yield (
            source.topic, source.partition, source.offset, source.index, event.customer_id, event.event_id,
            event.digest(), event.model, event.occurred_at, item.received_at, event.input_tokens,
            event.cached_input_tokens, event.output_tokens, event.cache_write_tokens, event.cache_write_long_tokens,
            event.audio_input_tokens, event.audio_output_tokens, event.reasoning_tokens, event.service_tier,
            event.region, event.cluster, event.metadata, event.provider_usage,  # the jsonb dumper serializes these
        )


@transaction.atomic
def ledger_append(*, accepted: Sequence[Accepted]) -> AppendResult:
    """Append the new events of a batch, count exact repeats, set conflicts aside."""
    if not accepted:
        return AppendResult()
    ledger_partitions_ensure(months={_month_start(a.event.occurred_at) for a in accepted})
    with connection.cursor() as cursor:
        cursor.execute(STAGE_CREATE)
        cursor.execute(LOST_CREATE)
        columns = ", ".join(f'"{c}"' for c in STAGE_COLUMNS)
        # Binary: no text formatting of timestamps, integers and the digest (half the cost of the COPY).
        copy_sql = f"COPY usage_stage ({columns}) FROM STDIN (FORMAT BINARY)"
        with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
            copy.set_types(STAGE_TYPES)
            for row in _stage_rows(accepted):
                copy.write_row(row)
        cursor.execute(APPEND_SQL)
        appended, customers, months = cursor.fetchone()
        cursor.execute(REPEATS_SQL)
        duplicates, conflicts = cursor.fetchone()
        cursor.execute("TRUNCATE usage_stage, usage_stage_lost")
    return AppendResult(appended=appended, duplicates=duplicates, conflicts=conflicts,
                        touched=frozenset(zip(customers, months)))


def _storable(value):
    """What Postgres text and jsonb cannot hold, written as escapes: a dead letter must store
    anyway. NUL and lone surrogates as `\\u0000`/`\\ud800`, NaN and ±Infinity as strings.
    Payloads arrive cut to DOCUMENT_DEPTH_MAX levels (steps.bounded), so this recursion is shallow."""
    if isinstance(value, str):
        value = value.replace("\x00", "\\u0000")
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if UNSTORABLE.search(value) else value
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # "NaN", "Infinity", "-Infinity", as the producer wrote it
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


@transaction.atomic
def dead_letters_record(*, rejected: Sequence[Rejected]) -> None:
    """Keep every refused element with its reason; a replayed element is kept once."""
    DeadLetter.objects.bulk_create(
        [
            DeadLetter(
                kind=r.kind, reason=r.reason, errors=_storable(r.errors), customer_id=_storable(r.customer_id)[:64],
                event_id=_storable(r.event_id)[:128], payload=_storable(r.payload), existing_payload=r.existing,
                raw=base64.b64encode(r.raw).decode() if r.raw is not None else "",
                received_at=r.received_at, source_topic=r.source.topic, source_partition=r.source.partition,
                source_offset=r.source.offset, source_index=r.source.index,
            )
            for r in rejected
        ],
        ignore_conflicts=True,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def consumer_watermark_record(*, topic: str, partitions: Iterable[int], at: datetime) -> None:
    """These partitions of `topic` were read up to their high watermark at `at` and what was
    read is written (call it in the transaction that writes it). Never moves back."""
    partitions = sorted(set(partitions))
    if not partitions:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO metering_consumer_watermark (topic, partition, caught_up_at) "
            "SELECT %(topic)s, p, %(at)s FROM unnest(%(partitions)s::int[]) p ORDER BY p "
            "ON CONFLICT (topic, partition) DO UPDATE "
            "SET caught_up_at = greatest(metering_consumer_watermark.caught_up_at, EXCLUDED.caught_up_at)",
            {"topic": topic, "partitions": partitions, "at": at})


class ApiKeyScopeInvalid(Exception):
    """A customer key needs a customer; other scopes must not have one."""


@transaction.atomic
def api_key_create(*, scope: str, customer_id: str | None = None, name: str = "") -> tuple["ApiKey", str]:
    """Make a key; returns the row and the raw key, which is never stored and shown only now."""
    if scope not in ApiKey.Scope.values:
        raise ApiKeyScopeInvalid(f"Unknown scope '{scope}'; use one of {', '.join(ApiKey.Scope.values)}.")
    if (scope == ApiKey.Scope.CUSTOMER) != (customer_id is not None):
        raise ApiKeyScopeInvalid("A 'customer' key needs --customer; other scopes take none.")
    customer = Customer.objects.get(customer_id=customer_id) if customer_id else None
    raw_key = "tl_" + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name, scope=scope, customer=customer, prefix=raw_key[:10], key_hash=api_key_hash(raw_key)
    )
    return key, raw_key


class ApiKeyNotFound(Exception):
    """No key, or more than one, answers to what was given."""


@transaction.atomic
def api_key_revoke(*, key: str, as_of: datetime) -> ApiKey:
    """Revoke the key named by its prefix (admin's list shows it) or by the whole raw key.
    Requests carrying it are refused from the next one on; revoking again keeps the first
    revocation time."""
    matches = list(ApiKey.objects.select_for_update().filter(Q(prefix=key) | Q(key_hash=api_key_hash(key)))[:2])
    if len(matches) != 1:
        raise ApiKeyNotFound(f"No API key has the prefix '{key}'." if not matches else
                             f"More than one API key has the prefix '{key}'; give the whole key.")
    (api_key,) = matches
    if api_key.revoked_at is None:
        api_key.revoked_at = as_of
        api_key.save(update_fields=["revoked_at"])
    return api_key


BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


class ModelTierChangeConflict(DomainError):
    code = "model_tier_change_conflict"
    status = 409
    title = "The model already changes tier at that instant"


@transaction.atomic
def catalog_model_create(*, name: str, tier: str) -> CatalogModel:
    """A model in the catalog, priced by `tier` from the beginning."""
    model = CatalogModel.objects.create(name=name)
    ModelTierChange.objects.create(model=model, tier=tier, effective_from=BEGINNING)
    return model


@transaction.atomic
def model_tier_change(*, model_name: str, tier: str, effective_from: datetime) -> CatalogModel:
    model = CatalogModel.objects.select_for_update().get(name=model_name)
    if model.tier_changes.filter(effective_from=effective_from).exists():
        raise ModelTierChangeConflict(f"{model_name} already changes tier at {effective_from.isoformat()}.")
    ModelTierChange.objects.create(model=model, tier=tier, effective_from=effective_from)
    from billing.services.spend import spends_forget  # billing builds on metering: imported late
    from metering.projections import usage_boundary_add

    usage_boundary_add(at=effective_from)
    spends_forget(customer_ids=None, as_of=utc_now())
    return model
