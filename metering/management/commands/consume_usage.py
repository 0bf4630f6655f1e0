"""python manage.py consume_usage: run the ledger consumer until SIGTERM/SIGINT.

Exit codes: 0 after SIGTERM/SIGINT (the batch in hand finished and committed) or
--until-idle; 1 when the database goes away (connection lost or refused), with one
line on stderr saying so. That exit is by design: the supervisor (compose's
`restart: unless-stopped`) starts it again, and the batch whose offsets were not
committed is replayed, a no-op for whatever of it did commit.

`--processes N` (N > 1) forks N children, each a whole consumer of its own (its own
Postgres connection, its own Kafka consumer and producer) in the same consumer group,
so the group spreads the topic's partitions over them; more processes than partitions
leaves the extra ones idle. Each child serves its metrics on METRICS_PORT + its index
(0 … N−1) when METRICS_PORT is set. The parent only supervises: it forwards SIGTERM and
SIGINT to every child, and when a child exits non-zero it stops the others (SIGTERM:
they finish and commit their batch) and exits with that child's code, so its own
supervisor restarts the set, as it would restart a single consumer.
"""

import os
import signal
import sys
import traceback
from threading import Event

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError, connections

from config.metrics.exposition import metrics_serve
from metering.consumer.runner import ConsumerConfig, LedgerConsumer

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
        parser.add_argument("--processes", type=int, default=1,
                            help="Run this many consumer processes in the group, supervised by this one.")

    def handle(self, *args, **options):
        if options["processes"] < 1:
            raise CommandError("--processes must be at least 1")
        if options["processes"] == 1:
            self._consume(options, metrics_port=settings.METRICS_PORT)
            return
        sys.exit(self._supervise(options))

    def _consume(self, options, *, metrics_port: int | None, stop: Event | None = None) -> None:
        stop = stop if stop is not None else stop_on_signals()
        if metrics_port:  # Prometheus scrapes this process on its own port (docs/operations.md)
            metrics_serve(port=metrics_port, addr=settings.METRICS_ADDR)
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

    def _supervise(self, options) -> int:
        """Fork the children, forward stop signals, return the exit code for the set."""
        connections.close_all()  # no connection may be shared across fork: each child opens its own
        children: dict[int, int] = {}  # pid → index
        # Signals stay blocked while forking: a child must not run the parent's forwarding
        # handler, and a stop that arrives mid-way reaches every child once they all exist.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        for index in range(options["processes"]):
            pid = os.fork()
            if pid == 0:
                self._child(options, index)  # never returns
            children[pid] = index

        def forward(signum, _frame):
            for pid in list(children):
                _kill(pid, signal.SIGTERM)

        for signum in STOP_SIGNALS:
            signal.signal(signum, forward)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        code = 0
        while children:
            pid, status = os.wait()
            index = children.pop(pid)
            child_code = os.waitstatus_to_exitcode(status)
            if child_code != 0 and code == 0:
                code = child_code if child_code > 0 else 1
                self.stderr.write(f"consume_usage: process {index} exited {child_code}; stopping the others")
                forward(signal.SIGTERM, None)
        return code

    def _child(self, options, index: int) -> None:
        code = 0
        try:
            stop = stop_on_signals()  # before unblocking: a stop already pending is this child's own
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            port = settings.METRICS_PORT + index if settings.METRICS_PORT else None
            self._consume(options, metrics_port=port, stop=stop)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def stop_on_signals() -> Event:
    """SIGTERM/SIGINT set the event: the consumer finishes the batch in hand, commits, exits 0."""
    stop = Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
