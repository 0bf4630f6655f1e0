"""python manage.py consume_usage: run the ledger consumer until SIGTERM/SIGINT."""

import signal
from threading import Event

from django.conf import settings
from django.core.management.base import BaseCommand

from metering.consumer.runner import ConsumerConfig, LedgerConsumer


class Command(BaseCommand):
    help = "Consume usage events from Kafka into the ledger (exactly once in effect)."

    def add_arguments(self, parser):
        parser.add_argument("--bootstrap-servers", default=settings.KAFKA_BOOTSTRAP_SERVERS)
        parser.add_argument("--topic", default=settings.KAFKA_USAGE_TOPIC)
        parser.add_argument("--dlq-topic", default=settings.KAFKA_USAGE_DLQ_TOPIC)
        parser.add_argument("--group", default=settings.KAFKA_CONSUMER_GROUP)
        parser.add_argument("--session-timeout-ms", type=int, default=settings.KAFKA_SESSION_TIMEOUT_MS)
        parser.add_argument("--batch-messages-max", type=int, default=20_000)
        parser.add_argument("--stats-interval", type=float, default=30.0, help="Seconds between progress lines.")
        parser.add_argument("--until-idle", type=float, default=None,
                            help="Exit 0 after this many seconds with nothing to read (drain and stop).")

    def handle(self, *args, **options):
        stop = Event()
        # SIGTERM/SIGINT: finish the batch in hand, commit, exit 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        config = ConsumerConfig(
            bootstrap_servers=options["bootstrap_servers"], topic=options["topic"], group_id=options["group"],
            dlq_topic=options["dlq_topic"], batch_messages_max=options["batch_messages_max"],
            session_timeout_ms=options["session_timeout_ms"], stats_interval_s=options["stats_interval"],
            idle_exit_s=options["until_idle"],
        )
        stats = LedgerConsumer(config).run(stop)
        self.stdout.write(
            f"consumed {stats.events} events in {stats.batches} batches: appended={stats.appended} "
            f"duplicates={stats.duplicates} conflicts={stats.conflicts} dead_letters={stats.dead_letters}"
        )
