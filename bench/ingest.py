"""Kafka → ledger ingestion throughput, consumer memory, and two baselines.

    .venv/bin/python -m bench.ingest [--events 1000000]

For each mode, single-event messages and batched messages (arrays of up to 1,000
events of one customer), it produces --events events from scripts/traffic.py
(its default mix: ~3% exact duplicates, 0.2% conflicts, 0.3% invalid) to a fresh
6-partition topic, then drains that topic twice, each time in a subprocess of its own:

- bare: a kafka-python consumer that only polls and json-decodes (events/s);
- ledger: the real LedgerConsumer, writing into an emptied ledger (events/s, peak RSS).

Afterwards the ledger's rows are copied with one psycopg COPY per 100,000 rows into a
plain table with no index and no partitions (rows/s): what Postgres takes at best.

Timing: from the first record a consumer receives to the last record handled (its
offset commit, for the ledger), so the group join and the idle wait before exit are
left out. The broker is Tansu in memory on loopback, started here unless
KAFKA_BOOTSTRAP_SERVERS is set; the database is tokenledger_bench (created and
migrated if missing). Prints the figures and the targets as JSON.
"""

import argparse
import json
import subprocess
import time

from bench._setup import (
    DATABASE_URL_DEFAULT, PYTHON, ROOT, broker, conditions, database_create, django_start, figures_print,
    ledger_truncate, target, topics_fresh, traffic,
)

MODES = {"single": (1, 1), "batched": (1_000, 2)}  # name → (events per message, traffic seed)
COPY_CHUNK_ROWS = 100_000


def produce(*, bootstrap: str, topic: str, events: int, batch_size: int, seed: int):
    """Produce the traffic; returns its tally and the number of messages."""
    from kafka import KafkaProducer

    from metering.topics import PRODUCER_CONFIG
    from scripts.traffic import messages_produce

    source = traffic(seed=seed, clean=False)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **{**PRODUCER_CONFIG, "linger_ms": 50, "batch_size": 1 << 20})
    try:
        messages = messages_produce(producer, topic, source.messages(events, batch_size=batch_size))
    finally:
        producer.close()
    return source.tally, messages


def consume(kind: str, *, bootstrap: str, topic: str, dlq_topic: str, profile: str | None) -> dict:
    """Run bench._consume in a subprocess (its own RSS) and return its JSON figures."""
    command = [PYTHON, "-m", "bench._consume", kind, "--bootstrap", bootstrap, "--topic", topic,
               "--dlq-topic", dlq_topic, "--group", f"{topic}-{kind}"]
    if profile:
        command += ["--profile", profile]
    completed = subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    figures["events_per_s"] = round(figures["events"] / figures["seconds"]) if figures["seconds"] else None
    return figures


def tally_matches(ledger: dict, tally) -> bool:
    """The ledger holds exactly what the traffic says it must."""
    return (ledger["appended"], ledger["duplicates"], ledger["conflicts"], ledger["dead_letters"]) == (
        tally.accepted, tally.duplicates, tally.conflicts, tally.invalid + tally.undecodable)


def mode_run(mode: str, *, bootstrap: str, events: int, profile_prefix: str | None) -> dict:
    batch_size, seed = MODES[mode]
    topic, dlq_topic = topics_fresh(bootstrap, mode)
    tally, messages = produce(bootstrap=bootstrap, topic=topic, events=events, batch_size=batch_size, seed=seed)
    bare = consume("bare", bootstrap=bootstrap, topic=topic, dlq_topic=dlq_topic, profile=None)
    ledger_truncate()
    profile = f"{profile_prefix}-{mode}.prof" if profile_prefix else None
    ledger = consume("ledger", bootstrap=bootstrap, topic=topic, dlq_topic=dlq_topic, profile=profile)
    ledger["matches_traffic_tally"] = tally_matches(ledger, tally)
    return {"messages_produced": messages, "bare": bare, "ledger": ledger}


def copy_baseline(database_url: str) -> dict:
    """COPY the ledger's rows, as Python tuples, into a plain unindexed table over a plain
    psycopg connection; only the COPYs and the commit are timed, not reading the rows."""
    import psycopg

    seconds = rows = 0
    with psycopg.connect(database_url) as source, psycopg.connect(database_url) as sink:
        sink.execute("DROP TABLE IF EXISTS bench_copy_plain")
        sink.execute("CREATE TABLE bench_copy_plain (LIKE metering_usage_event)")
        sink.commit()
        rows_source = source.cursor(name="bench_copy_source")
        rows_source.execute("SELECT * FROM metering_usage_event")
        while chunk := rows_source.fetchmany(COPY_CHUNK_ROWS):
            started = time.perf_counter()
            with sink.cursor().copy("COPY bench_copy_plain FROM STDIN") as copy:
                for row in chunk:
                    copy.write_row(row)
            sink.commit()
            seconds += time.perf_counter() - started
            rows += len(chunk)
        sink.execute("DROP TABLE bench_copy_plain")
        sink.commit()
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds) if seconds else None}


def summary(results: dict, copy: dict) -> dict:
    single, batched = results["single"], results["batched"]
    ratio = round(single["ledger"]["events_per_s"] / single["bare"]["events_per_s"], 3)
    ratio_copy = round(batched["ledger"]["events_per_s"] / copy["rows_per_s"], 3) if copy["rows_per_s"] else None
    rss_mb = max(single["ledger"]["peak_rss_mb"], batched["ledger"]["peak_rss_mb"])
    return {
        **results,
        "copy_plain_table": copy,
        "ratio_single_ledger_to_bare": ratio,
        "ratio_batched_ledger_to_copy": ratio_copy,
        "consumer_peak_rss_mb": rss_mb,
        "targets": {
            "batched_events_per_s": target(batched["ledger"]["events_per_s"], at_least=100_000),
            "batched_ledger_to_copy_ratio": target(ratio_copy, at_least=0.50),
            "single_ledger_to_bare_ratio": target(ratio, at_least=0.70),
            "consumer_peak_rss_mb": target(rss_mb, below=300),
        },
        "timing": "from the first record received to the last record handled (ledger: its offset commit); "
                  "group join and idle exit excluded; each consumer in its own process",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="Events per mode.")
    parser.add_argument("--database-url", default=DATABASE_URL_DEFAULT)
    parser.add_argument("--profile", metavar="PREFIX", help="cProfile the ledger consumer into PREFIX-<mode>.prof.")
    args = parser.parse_args()
    measured_under = conditions()
    database_create(args.database_url)
    with broker() as bootstrap:
        django_start(database_url=args.database_url, bootstrap=bootstrap)
        results = {mode: mode_run(mode, bootstrap=bootstrap, events=args.events, profile_prefix=args.profile)
                   for mode in MODES}
        copy = copy_baseline(args.database_url)
    figures_print({"events": args.events, "conditions": measured_under, **summary(results, copy)})


if __name__ == "__main__":
    main()
