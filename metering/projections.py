"""The hourly rollups as a projection of the ledger (events and their adjustments):
recompute, compare, rebuild.

Both functions work on whole hours over [start, end); None means unbounded.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from metering.services import ROLLUP_COLUMNS, ROLLUP_GROUP, TOKEN_SUMS
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
