"""The hourly rollups and the usage segments as projections of the ledger (events and
their adjustments): recompute, compare, rebuild; and the boundaries that cut segments.

The rollup functions work on whole hours over [start, end), the segment ones on whole
months; None means unbounded.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction

from metering.services import ROLLUP_COLUMNS, ROLLUP_GROUP, SEGMENT_COLUMNS, TOKEN_SUMS, segment_start_sql
from metering.token_classes import FIELDS as TOKEN_FIELDS

GROUP = ("customer_id", "model", "service_tier", "region", "cluster", "hour")
SUMS = ("events", *TOKEN_FIELDS)

_IN_RANGE = ("occurred_at >= coalesce(%(start)s::timestamptz, '-infinity') "
             "AND occurred_at < coalesce(%(end)s::timestamptz, 'infinity')")
# The ledger's events with their adjustments (each a signed difference in the event's own
# hour): a group whose every event is voided has no rollup.
LEDGER_TRUTH = f"""
SELECT customer_id, model, service_tier, region, cluster, hour, {", ".join(f"sum({s})::bigint" for s in SUMS)}
FROM (
    SELECT {ROLLUP_GROUP} AS hour, {TOKEN_SUMS}
    FROM metering_usage_event WHERE {_IN_RANGE}
    GROUP BY 1, 2, 3, 4, 5, 6
    UNION ALL
    SELECT {ROLLUP_GROUP}, sum(events)::bigint, {", ".join(f"sum({name})::bigint" for name in TOKEN_FIELDS)}
    FROM metering_usage_adjustment WHERE {_IN_RANGE}
    GROUP BY 1, 2, 3, 4, 5, 6
) parts (customer_id, model, service_tier, region, cluster, hour, {", ".join(SUMS)})
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(events) > 0
"""


@dataclass(frozen=True)
class RollupDifference:
    key: dict
    ledger: dict | None  # None: the rollup has a row the ledger does not support
    rollup: dict | None  # None: the ledger has usage the rollup lacks

    def __str__(self):
        key = " ".join(f"{k}={v.isoformat() if isinstance(v, datetime) else v}" for k, v in self.key.items())
        return f"{key}: ledger={self.ledger} rollup={self.rollup}"


def rollup_differences(*, start: datetime | None, end: datetime | None) -> list[RollupDifference]:
    """Every (group, hour) where the stored rollup differs from the ledger."""
    columns = ", ".join(GROUP)
    truth_cols = ", ".join(f"t.{s} AS ledger_{s}" for s in SUMS)
    kept_cols = ", ".join(f"k.{s} AS rollup_{s}" for s in SUMS)
    sql = f"""
    WITH truth ({columns}, {", ".join(SUMS)}) AS ({LEDGER_TRUTH}),
    kept AS (
        SELECT {columns}, {", ".join(SUMS)} FROM metering_hourly_rollup
        WHERE hour >= coalesce(%(start)s::timestamptz, '-infinity') AND hour < coalesce(%(end)s::timestamptz, 'infinity')
    )
    SELECT {columns}, {truth_cols}, {kept_cols}
    FROM truth t FULL OUTER JOIN kept k USING ({columns})
    WHERE ({", ".join(f"t.{s}" for s in SUMS)}) IS DISTINCT FROM ({", ".join(f"k.{s}" for s in SUMS)})
    ORDER BY hour, customer_id, model, service_tier, region, cluster
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": start, "end": end})
        rows = cursor.fetchall()
    differences = []
    for row in rows:
        key, ledger, kept = row[:6], row[6:6 + len(SUMS)], row[6 + len(SUMS):]
        differences.append(RollupDifference(
            key=dict(zip(GROUP, key)),
            ledger=dict(zip(SUMS, ledger)) if ledger[0] is not None else None,
            rollup=dict(zip(SUMS, kept)) if kept[0] is not None else None,
        ))
    return differences


@transaction.atomic
def rollups_rebuild(*, start: datetime | None, end: datetime | None) -> int:
    """Replace the rollups of [start, end) by a recomputation from the ledger.

    The table lock makes consumers wait, so no append lands between delete and insert.
    """
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE metering_hourly_rollup IN SHARE ROW EXCLUSIVE MODE")
        params = {"start": start, "end": end}
        cursor.execute(
            "DELETE FROM metering_hourly_rollup "
            "WHERE hour >= coalesce(%(start)s::timestamptz, '-infinity') AND hour < coalesce(%(end)s::timestamptz, 'infinity')",
            params,
        )
        cursor.execute(f"INSERT INTO metering_hourly_rollup ({ROLLUP_COLUMNS}) {LEDGER_TRUTH}", params)
        return cursor.rowcount


SEGMENT_GROUP = ("customer_id", "starts_at", "model", "service_tier", "cluster")
_SEGMENT_RANGE = ("starts_at >= coalesce(%(start)s::timestamptz, '-infinity') "
                  "AND starts_at < coalesce(%(end)s::timestamptz, 'infinity')")


def _segment_sums(hourly: str) -> str:
    """SQL: `hourly` (rows of GROUP and SUMS) summed into usage segments."""
    return f"""
    SELECT customer_id, {segment_start_sql("hour")} AS starts_at, model, service_tier, cluster,
           {", ".join(f"sum({s})::bigint" for s in SUMS)}
    FROM ({hourly}) hourly ({", ".join(GROUP)}, {", ".join(SUMS)}) GROUP BY 1, 2, 3, 4, 5"""


# Verified and rebuilt from the ledger itself; split from the rollups (cheaper, and
# verified against the ledger in their turn).
SEGMENT_TRUTH = _segment_sums(LEDGER_TRUTH)
SEGMENT_OF_ROLLUPS = _segment_sums(
    f"SELECT {', '.join(GROUP)}, {', '.join(SUMS)} FROM metering_hourly_rollup "
    "WHERE hour >= %(start)s AND hour < %(end)s")


def _months_around(start: datetime | None, end: datetime | None) -> dict:
    """[start, end) widened to whole months, the grain segments are rebuilt in."""
    def month_of(moment: datetime) -> datetime:
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    upper = None
    if end is not None:
        upper = month_of(end)
        if upper != end:
            upper = month_of(upper + timedelta(days=32))
    return {"start": None if start is None else month_of(start), "end": upper}


class SegmentDifference(RollupDifference):
    def __str__(self):
        return "usage segment " + super().__str__().replace(" rollup=", " segment=")


def segment_differences(*, start: datetime | None, end: datetime | None) -> list[SegmentDifference]:
    """Every segment of the months of [start, end) whose sums differ from the ledger's (a
    segment whose events were all voided holds zeros, and counts as absent)."""
    columns = ", ".join(SEGMENT_GROUP)
    sql = f"""
    WITH truth ({columns}, {", ".join(SUMS)}) AS ({SEGMENT_TRUTH}),
    kept AS (SELECT {columns}, {", ".join(SUMS)} FROM metering_usage_segment WHERE {_SEGMENT_RANGE} AND events > 0)
    SELECT {columns}, {", ".join(f"t.{s}" for s in SUMS)}, {", ".join(f"k.{s}" for s in SUMS)}
    FROM truth t FULL OUTER JOIN kept k USING ({columns})
    WHERE ({", ".join(f"t.{s}" for s in SUMS)}) IS DISTINCT FROM ({", ".join(f"k.{s}" for s in SUMS)})
    ORDER BY starts_at, customer_id, model, service_tier, cluster
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, _months_around(start, end))
        rows = cursor.fetchall()
    width, sums = len(SEGMENT_GROUP), len(SUMS)
    return [SegmentDifference(key=dict(zip(SEGMENT_GROUP, row[:width])),
                              ledger=dict(zip(SUMS, row[width:width + sums])) if row[width] is not None else None,
                              rollup=dict(zip(SUMS, row[width + sums:])) if row[width + sums] is not None else None)
            for row in rows]


@transaction.atomic
def segments_rebuild(*, start: datetime | None, end: datetime | None) -> int:
    """Replace the segments of the months of [start, end) by a recomputation from the
    ledger. The table lock makes consumers wait, so no append lands between delete and insert."""
    params = _months_around(start, end)
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE metering_usage_segment IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM metering_usage_segment WHERE {_SEGMENT_RANGE}", params)
        cursor.execute(f"INSERT INTO metering_usage_segment ({SEGMENT_COLUMNS}) {SEGMENT_TRUTH}", params)
        return cursor.rowcount


@transaction.atomic
def usage_boundary_add(*, at: datetime) -> bool:
    """Make `at` a boundary of the usage segments (a new price, model tier or rental term
    starts or ends there): the segment it falls in is split, from the rollups. False when
    it already was one. The segment table is locked first, so a consumer's append either
    finished before (and is in the rollups this reads) or waits and lands in the new
    segments; callers invalidate the live balances it changes."""
    month = _months_around(at, None)["start"]
    if at == month:
        return False
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE metering_usage_segment IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute("INSERT INTO metering_usage_boundary (at) VALUES (%s) ON CONFLICT DO NOTHING", [at])
        if cursor.rowcount == 0:
            return False
        cursor.execute(
            "SELECT greatest(%(month)s, (SELECT max(at) FROM metering_usage_boundary WHERE at < %(at)s)), "
            "least(%(next)s, (SELECT min(at) FROM metering_usage_boundary WHERE at > %(at)s))",
            {"at": at, "month": month, "next": _months_around(None, at + timedelta(seconds=1))["end"]})
        start, end = cursor.fetchone()
        cursor.execute("DELETE FROM metering_usage_segment WHERE starts_at = %s", [start])
        cursor.execute(f"INSERT INTO metering_usage_segment ({SEGMENT_COLUMNS}) {SEGMENT_OF_ROLLUPS}",
                       {"start": start, "end": end})
    return True
