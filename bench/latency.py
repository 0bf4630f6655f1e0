"""Produce → visible latency of the ledger consumer under a steady load.

    .venv/bin/python -m bench.latency                          # measure the max rate, then 60 s at 50% of it
    .venv/bin/python -m bench.latency --max-events-per-s 8000  # take the max as given
    .venv/bin/python -m bench.latency --duration-s 20 --probe-events 20000   # quicker

1. Max rate (unless --max-events-per-s): --probe-events single-event messages of the
   generator's default mix to a fresh topic, drained by the real LedgerConsumer in a
   process of its own (bench.ingest's `consume`): events/s from the first record to the
   last commit.
2. Steady load: one real LedgerConsumer process (bench._consume) in a fresh group on a
   fresh 6-partition topic, warmed up (joined, partitions assigned, first batch
   written); then a producer process (the project's PRODUCER_CONFIG, one event per
   message, keyed by customer) sends --fraction × max events/s, paced every 10 ms,
   for --duration-s. Every event's event_id carries the wall-clock instant of its
   `send()` (`lat-<seq>-<ns>`).
3. Visibility: this process polls the ledger every --poll-ms over its own connection
   (`id > last seen`, on the ledger's primary key). The ledger row, its hourly rollup
   (what /usage and balances read) and its key are written in one transaction, so an
   event is visible in the rollups exactly when its ledger row is. An event's visible
   instant is the start of the first poll that sees it (its snapshot is taken then),
   so a figure is late by at most one poll interval plus one poll's duration
   (`resolution_ms`). With one consumer, ids grow in commit order (nextval inside
   each transaction, transactions one after the other), so `id > last seen` misses
   nothing; the count seen is checked against the count sent.

Prints JSON: p50 / p99 / max latency in ms, the rate achieved, the consumer's batches
and the breakdown of a batch (Kafka → transaction start = `ingested_at − send`,
transaction = commit − `ingested_at`). Target: p99 < 2 s. Database
tokenledger_bench_latency (created and migrated if missing; its ledger is emptied),
so that it can run beside the other benchmarks.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import time

from bench._setup import (
    CUSTOMERS, MODELS, PYTHON, ROOT, broker, conditions, database_create, django_start, figures_print,
    ledger_truncate, target, topics_fresh,
)

DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/tokenledger_bench_latency"
PACE_S = 0.010


def max_rate_measure(*, bootstrap: str, events: int) -> dict:
    """Drain a backlog of single-event messages with the real consumer: its events/s."""
    from bench.ingest import consume, produce

    topic, dlq_topic = topics_fresh(bootstrap, "latency-probe")
    produce(bootstrap=bootstrap, topic=topic, events=events, batch_size=1, seed=31)
    ledger_truncate()
    return consume("ledger", bootstrap=bootstrap, topic=topic, dlq_topic=dlq_topic, profile=None)


def latency_event(seq: int, sent_ns: int, served_at: str) -> dict:
    customer = CUSTOMERS[seq % len(CUSTOMERS)]
    model = list(MODELS)[seq % len(MODELS)]
    return {
        "event_id": f"lat-{seq:09d}-{sent_ns}", "customer_id": customer, "model": model, "timestamp": served_at,
        "input_tokens": 1830, "cached_input_tokens": 1024, "output_tokens": 412, "service_tier": "standard",
        "region": "us-east", "cluster": "iad-h100-a",
    }


def produce_steady(bootstrap: str, topic: str, rate: float, duration_s: float, prefix: str, result) -> None:
    """In a process of its own: `rate` events/s for `duration_s`, paced every PACE_S."""
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    from metering.topics import PRODUCER_CONFIG

    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_CONFIG)
    sent, started = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < duration_s:
            due = int(rate * elapsed)
            served_at = datetime.now(UTC).isoformat()
            while sent < due:
                body = latency_event(sent, time.time_ns(), served_at)
                body["event_id"] = prefix + body["event_id"]
                producer.send(topic, key=body["customer_id"].encode(), value=json.dumps(body).encode())
                sent += 1
            time.sleep(PACE_S)
        producer.flush()
    finally:
        producer.close()
    result.put({"sent": sent, "seconds": round(time.monotonic() - started, 3)})


class Poller:
    """Reads the ledger's new rows on its own autocommit connection."""

    def __init__(self, database_url: str):
        import psycopg

        self.connection = psycopg.connect(database_url, autocommit=True)
        self.last_id = 0
        self.poll_s: list[float] = []

    def poll(self, prefix: str) -> list[tuple[int, int, float]]:
        """(sent_ns, ingested_at_ns, visible_ns) of each row committed since the last poll."""
        visible_ns = time.time_ns()
        started = time.monotonic()
        rows = self.connection.execute(
            "SELECT id, event_id, ingested_at FROM metering_usage_event WHERE id > %s ORDER BY id",
            [self.last_id]).fetchall()
        self.poll_s.append(time.monotonic() - started)
        if rows:
            self.last_id = rows[-1][0]
        return [(int(event_id.rsplit("-", 1)[1]), int(ingested_at.timestamp() * 1e9), visible_ns)
                for _, event_id, ingested_at in rows if event_id.startswith(prefix)]


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def distribution_ms(values_ns: list[int]) -> dict:
    values = sorted(v / 1e6 for v in values_ns)
    if not values:
        return {}
    return {"p50": round(percentile(values, 0.50), 1), "p99": round(percentile(values, 0.99), 1),
            "max": round(values[-1], 1), "mean": round(sum(values) / len(values), 1)}


def consumer_start(bootstrap: str, topic: str, dlq_topic: str, idle_exit_s: float) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "bench._consume", "ledger", "--bootstrap", bootstrap, "--topic", topic,
         "--dlq-topic", dlq_topic, "--group", f"{topic}-ledger", "--idle-exit-s", str(idle_exit_s)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)


def warm_up(*, bootstrap: str, topic: str, poller: Poller) -> None:
    """One event per partition key until the consumer has joined and written them."""
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    served_at = datetime.now(UTC).isoformat()
    for seq in range(len(CUSTOMERS)):
        body = latency_event(seq, time.time_ns(), served_at)
        body["event_id"] = "warm-" + body["event_id"]
        producer.send(topic, key=body["customer_id"].encode(), value=json.dumps(body).encode())
    producer.close()
    deadline, seen = time.monotonic() + 60, 0
    while seen < len(CUSTOMERS):
        if time.monotonic() > deadline:
            raise RuntimeError("the consumer did not write the warm-up events within 60 s")
        seen += len(poller.poll("warm-"))
        time.sleep(0.05)


def steady_run(*, bootstrap: str, database_url: str, rate: float, duration_s: float, poll_ms: float) -> dict:
    topic, dlq_topic = topics_fresh(bootstrap, "latency")
    ledger_truncate()
    poller = Poller(database_url)
    consumer = consumer_start(bootstrap, topic, dlq_topic, idle_exit_s=5.0)
    warm_up(bootstrap=bootstrap, topic=topic, poller=poller)
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    producer = context.Process(target=produce_steady, args=(bootstrap, topic, rate, duration_s, "m-", result))
    load_before = os.getloadavg()[0]
    producer.start()
    observed: list[tuple[int, int, float]] = []
    deadline = time.monotonic() + duration_s + 60
    sent = None
    while time.monotonic() < deadline:
        observed += poller.poll("m-")
        if sent is None and not result.empty():
            sent = result.get()
        if sent is not None and len(observed) >= sent["sent"]:
            break
        time.sleep(poll_ms / 1000)
    load_after = os.getloadavg()[0]
    producer.join(timeout=30)
    figures = json.loads(consumer.communicate(timeout=120)[0].strip().splitlines()[-1])
    latencies = [visible - sent_ns for sent_ns, _, visible in observed]
    to_transaction = [ingested - sent_ns for sent_ns, ingested, _ in observed]
    transaction = [visible - ingested for _, ingested, visible in observed]
    polls = sorted(poller.poll_s)
    return {
        "rate_events_per_s": round(rate), "duration_s": duration_s, "sent": sent, "visible": len(observed),
        "all_visible": sent is not None and len(observed) == sent["sent"],
        "latency_ms": distribution_ms(latencies),
        "send_to_transaction_start_ms": distribution_ms(to_transaction),
        "transaction_start_to_visible_ms": distribution_ms(transaction),
        "resolution_ms": round(poll_ms + percentile(polls, 0.99) * 1000, 1) if polls else None,
        "consumer": {k: figures[k] for k in ("events", "batches", "peak_rss_mb")},
        "events_per_batch_mean": round(figures["events"] / max(figures["batches"], 1)),
        "load_avg_1m": {"producing_start": round(load_before, 2), "producing_end": round(load_after, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-events-per-s", type=float, help="Skip the probe drain; take this as the max.")
    parser.add_argument("--probe-events", type=int, default=60_000, help="Events of the probe drain.")
    parser.add_argument("--fraction", type=float, default=0.5, help="Share of the max rate to produce.")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument("--database-url", default=DATABASE_URL_DEFAULT)
    args = parser.parse_args()
    measured_under = conditions()
    database_create(args.database_url)
    with broker() as bootstrap:
        django_start(database_url=args.database_url, bootstrap=bootstrap)
        probe = None
        max_rate = args.max_events_per_s
        if max_rate is None:
            probe = max_rate_measure(bootstrap=bootstrap, events=args.probe_events)
            max_rate = probe["events_per_s"]
        steady = steady_run(bootstrap=bootstrap, database_url=args.database_url, rate=max_rate * args.fraction,
                            duration_s=args.duration_s, poll_ms=args.poll_ms)
    figures_print({
        "conditions": measured_under, "max_events_per_s": max_rate, "max_from": "given" if probe is None else probe,
        "fraction": args.fraction, "steady": steady,
        "targets": {"latency_ms_p99": target(steady["latency_ms"].get("p99", float("inf")), below=2_000)},
        "timing": "send() on the producer's wall clock → start of the first ledger poll that sees the row "
                  "(same machine, same clock)",
    })


if __name__ == "__main__":
    main()
