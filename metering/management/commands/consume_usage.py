"""python manage.py consume_usage: run the ledger consumer until SIGTERM/SIGINT.

Exit codes: 0 after SIGTERM/SIGINT (the batch in hand finished and committed) or
--until-idle; 1 when the database goes away (connection lost or refused), with one
line on stderr saying so. That exit is by design: the supervisor (compose's
`restart: unless-stopped`) starts it again, and the batch whose offsets were not
committed is replayed, a no-op for whatever of it did commit.
"""

import signal
import sys
from threading import Event

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import InterfaceError, OperationalError

from config.metrics.exposition import metrics_serve
from metering.consumer.runner import ConsumerConfig, LedgerConsumer


class Command(BaseCommand):
    help = "Consume usage events from Kafka into the ledger (exactly once in effect)."

    def add_arguments(self, parser):
        parser.add_argument("--bootstrap-servers", default=settings.KAFKA_BOOTSTRAP_SERVERS)
        parser.add_argument("--topic", default=settings.KAFKA_USAGE_TOPIC)
        parser.add_argument("--dlq-topic", default=settings.KAFKA_USAGE_DLQ_TOPIC)
        parser.add_argument("--group", default=settings.KAFKA_CONSUMER_GROUP)
        parser.add_argument("--session-timeout-ms", type=int, default=settings.KAFKA_SESSION_TIMEOUT_MS)
        parser.add_argument("--max-poll-interval-ms", type=int, default=ConsumerConfig.max_poll_interval_ms,
                            help="Longest a batch may take to write before the group moves its partitions.")
        parser.add_argument("--batch-messages-max", type=int, default=20_000)
        parser.add_argument("--stats-interval", type=float, default=30.0, help="Seconds between progress lines.")
        parser.add_argument("--until-idle", type=float, default=None,
                            help="Exit 0 after this many seconds with nothing to read (drain and stop).")

    def handle(self, *args, **options):
        stop = Event()
        # SIGTERM/SIGINT: finish the batch in hand, commit, exit 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if settings.METRICS_PORT:  # Prometheus scrapes this process on its own port (docs/operations.md)
            metrics_serve(port=settings.METRICS_PORT, addr=settings.METRICS_ADDR)
        config = ConsumerConfig(
            bootstrap_servers=options["bootstrap_servers"], topic=options["topic"], group_id=options["group"],
            dlq_topic=options["dlq_topic"], batch_messages_max=options["batch_messages_max"],
            session_timeout_ms=options["session_timeout_ms"], max_poll_interval_ms=options["max_poll_interval_ms"],
            stats_interval_s=options["stats_interval"], idle_exit_s=options["until_idle"],
        )
        try:
            stats = LedgerConsumer(config).run(stop)
        except (OperationalError, InterfaceError) as exc:
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            self.stderr.write(f"consume_usage: the database went away ({reason}); exiting 1 so the supervisor "
                              "restarts it; the batch in hand will be replayed")
            sys.exit(1)
        self.stdout.write(
            f"consumed {stats.events} events in {stats.batches} batches: appended={stats.appended} "
            f"duplicates={stats.duplicates} conflicts={stats.conflicts} dead_letters={stats.dead_letters}"
        )
