"""Scale-out: the same drain by 1 and by 2 (or more) ledger consumer processes in one group.

    .venv/bin/python -m bench.scale_out                       # 200,000 events; 1 then 2 processes
    .venv/bin/python -m bench.scale_out --events 100000 --processes 1,2,3

It produces --events single-event messages of scripts/traffic.py's default mix (~3%
exact duplicates, 0.2% conflicts, 0.3% invalid) to one fresh 6-partition topic, then
for each process count N empties the ledger and drains that topic with N real
LedgerConsumer processes (bench._consume, each its own process, Postgres connection and
Kafka clients) in a fresh consumer group, all started at once. Timing: from the
earliest first record any of them receives to the latest last commit (CLOCK_MONOTONIC
is shared by the processes). Per process: events, batches, seconds, peak RSS.
Exactness: the ledger's appended / duplicate / conflict / dead-letter rows against the
traffic's tally; events/s counts those rows (what the processes read is also shown, `*_read`:
more when a rebalance refused a commit and a batch was replayed). Also per drain, as inputs
to docs/scaling.md: WAL bytes written (pg_current_wal_lsn() before and after; the WAL is
the whole cluster's, so other work on the same Postgres inflates it) and the ledger
tables' size afterwards (pg_total_relation_size summed over every partition and index),
each per event.

Database tokenledger_bench_scale (created and migrated if missing; its ledger is
emptied), so that it can run beside the other benchmarks.
"""

import argparse
import json
import os
import subprocess
import time

from bench._setup import (
    LEDGER_TABLES, PYTHON, ROOT, broker, conditions, database_create, django_start, figures_print,
    ledger_truncate, topics_fresh,
)
from bench.ingest import produce, tally_matches

DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/tokenledger_bench_scale"
COUNTS = ("messages", "events", "appended", "duplicates", "conflicts", "dead_letters", "batches")


def wal_lsn() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        return cursor.fetchone()[0]


def wal_bytes_since(lsn: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::bigint", [lsn])
        return cursor.fetchone()[0]


def ledger_bytes() -> dict[str, int]:
    """Each ledger table with all its partitions, indexes and TOAST."""
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for table in LEDGER_TABLES:
            cursor.execute("SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) "
                           "FROM pg_partition_tree(%s::regclass) WHERE level > 0), "
                           "pg_total_relation_size(%s::regclass))::bigint", [table, table])
            sizes[table] = cursor.fetchone()[0]
    return sizes


def ledger_counts() -> dict:
    """What the ledger holds, read from its tables (a process's own counts include the batches
    it replayed when a rebalance refused its commit)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM metering_usage_event), "
                       "(SELECT count(*) FROM metering_usage_duplicate), "
                       "(SELECT count(*) FROM metering_dead_letter WHERE kind = 'conflict'), "
                       "(SELECT count(*) FROM metering_dead_letter WHERE kind <> 'conflict')")
        appended, duplicates, conflicts, dead_letters = cursor.fetchone()
    return {"appended": appended, "duplicates": duplicates, "conflicts": conflicts, "dead_letters": dead_letters}


def drain(n: int, *, bootstrap: str, topic: str, dlq_topic: str) -> dict:
    """N bench._consume ledger processes in one group, started together; their combined figures."""
    group = f"{topic}-x{n}"
    command = [PYTHON, "-m", "bench._consume", "ledger", "--bootstrap", bootstrap, "--topic", topic,
               "--dlq-topic", dlq_topic, "--group", group, "--idle-exit-s", "10"]
    load = os.getloadavg()[0]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    outputs = [p.communicate(timeout=1800)[0] for p in processes]
    if any(p.returncode for p in processes):
        raise RuntimeError(f"a consumer failed: {[p.returncode for p in processes]}")
    per_process = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    active = [f for f in per_process if f["first_s"] is not None]
    seconds = max(f["last_s"] for f in active) - min(f["first_s"] for f in active)
    read = {f"{key}_read": sum(f[key] for f in per_process) for key in COUNTS}
    held = ledger_counts()
    events = sum(held.values())
    return {
        "processes": n, "load_avg_1m_at_start": round(load, 2), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "seconds": round(seconds, 3), "events": events, "events_per_s": round(events / seconds), **held, **read,
        "per_process": [{"events": f["events"], "batches": f["batches"], "seconds": f["seconds"],
                         "peak_rss_mb": f["peak_rss_mb"]} for f in per_process],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--processes", default="1,2", help="Comma-separated process counts, run in this order.")
    parser.add_argument("--database-url", default=DATABASE_URL_DEFAULT)
    args = parser.parse_args()
    measured_under = conditions()
    database_create(args.database_url)
    runs = []
    with broker() as bootstrap:
        django_start(database_url=args.database_url, bootstrap=bootstrap)
        topic, dlq_topic = topics_fresh(bootstrap, "scale")
        tally, messages = produce(bootstrap=bootstrap, topic=topic, events=args.events, batch_size=1, seed=51)
        for n in (int(p) for p in args.processes.split(",")):
            ledger_truncate()
            time.sleep(1)  # let the truncate's own WAL settle out of the figure
            lsn = wal_lsn()
            run = drain(n, bootstrap=bootstrap, topic=topic, dlq_topic=dlq_topic)
            wal = wal_bytes_since(lsn)
            sizes = ledger_bytes()
            run["matches_traffic_tally"] = tally_matches(run, tally)
            run["wal_bytes_per_event"] = round(wal / run["events"])
            run["ledger_bytes_per_appended_event"] = round(sum(sizes.values()) / run["appended"])
            run["ledger_bytes"] = sizes
            runs.append(run)
    base = runs[0]["events_per_s"]
    figures_print({
        "events": args.events, "messages_produced": messages, "conditions": measured_under, "runs": runs,
        "speedup_vs_first": [round(r["events_per_s"] / base, 2) for r in runs],
        "timing": "earliest first record received → latest last offset commit, over all processes of a run; "
                  "group join and idle exit excluded",
    })


if __name__ == "__main__":
    main()
