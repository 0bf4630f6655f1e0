"""One consumer run in a process of its own, so that its peak RSS is its own.

    python -m bench._consume ledger --bootstrap B --topic T --dlq-topic D --group G
    python -m bench._consume bare   --bootstrap B --topic T --group G

`ledger` runs the real LedgerConsumer (poll → check → COPY + set-based SQL →
commit) until the topic has been idle for --idle-exit-s. `bare` polls with the same
KafkaConsumer settings and only json-decodes every message. Both print one JSON
object: counts, seconds from the first record received to the last record handled
(the group join before and the idle wait after are excluded), and VmHWM.

The parent passes DATABASE_URL in the environment; Django is set up here.
"""

import argparse
import cProfile
import json
import os
import time
from threading import Event

from bench._setup import SESSION_TIMEOUT_MS, peak_rss_mb


class Clock:
    """Marks the first non-empty poll and the last record handled."""

    def __init__(self):
        self.first_s: float | None = None
        self.last_s: float | None = None

    def seconds(self) -> float:
        return 0.0 if self.first_s is None else round(self.last_s - self.first_s, 3)

    def marks(self) -> dict:
        """CLOCK_MONOTONIC is one clock for every process of the machine: consumers run side
        by side (bench.scale_out) are timed from the earliest first_s to the latest last_s."""
        return {"first_s": self.first_s, "last_s": self.last_s}


def poll_timed(consumer, clock: Clock) -> None:
    """The first poll that returns records starts the clock: the group join is behind it."""
    poll = consumer.poll

    def timed(*args, **kwargs):
        polled = poll(*args, **kwargs)
        if polled and clock.first_s is None:
            clock.first_s = time.monotonic()
        return polled

    consumer.poll = timed


def commit_timed(consumer, clock: Clock) -> None:
    """The offset commit ends every ledger batch: its return is 'last record handled'."""
    commit = consumer.commit

    def timed(*args, **kwargs):
        result = commit(*args, **kwargs)
        clock.last_s = time.monotonic()
        return result

    consumer.commit = timed


def consumer_config(args):
    from metering.consumer.runner import ConsumerConfig

    return ConsumerConfig(
        bootstrap_servers=args.bootstrap, topic=args.topic, group_id=args.group, dlq_topic=args.dlq_topic,
        session_timeout_ms=SESSION_TIMEOUT_MS, idle_exit_s=args.idle_exit_s, stats_interval_s=3600,
    )


def ledger_run(args) -> dict:
    from metering.consumer.runner import LedgerConsumer, kafka_consumer

    config = consumer_config(args)
    consumer, clock = kafka_consumer(config), Clock()
    poll_timed(consumer, clock)
    commit_timed(consumer, clock)
    ledger = LedgerConsumer(config, consumer=consumer)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    stats = ledger.run(Event())
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    return {
        "messages": stats.messages, "events": stats.events, "appended": stats.appended,
        "duplicates": stats.duplicates, "conflicts": stats.conflicts, "dead_letters": stats.dead_letters,
        "batches": stats.batches, "seconds": clock.seconds(), **clock.marks(),
    }


def bare_run(args) -> dict:
    """Poll and json-decode only, with the ledger consumer's fetch settings and poll size."""
    from metering.consumer.runner import kafka_consumer

    config = consumer_config(args)
    consumer, clock = kafka_consumer(config), Clock()
    poll_timed(consumer, clock)
    messages = events = 0
    idle_since = time.monotonic()
    try:
        while True:
            polled = consumer.poll(timeout_ms=1_000, max_records=config.batch_messages_max)
            for records in polled.values():
                for record in records:
                    body = json.loads(record.value)
                    events += len(body) if isinstance(body, list) else 1
                messages += len(records)
            now_s = time.monotonic()
            if polled:
                clock.last_s = idle_since = now_s
            elif consumer.assignment() and now_s - idle_since >= config.idle_exit_s:
                break
    finally:
        consumer.close(autocommit=False)
    return {"messages": messages, "events": events, "seconds": clock.seconds()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["ledger", "bare"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--dlq-topic", default="")
    parser.add_argument("--group", required=True)
    parser.add_argument("--idle-exit-s", type=float, default=5.0)
    parser.add_argument("--profile", help="Write cProfile stats of the ledger run to this file.")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    figures = ledger_run(args) if args.kind == "ledger" else bare_run(args)
    figures["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
