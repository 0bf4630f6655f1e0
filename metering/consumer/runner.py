"""The ledger consumer: owns Kafka. Poll a batch → check (pure) → write in one
transaction → dead letters to the DLQ topic → commit offsets, in that order, so a
crash at any point replays the batch and the ledger's keys make the replay a no-op."""

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from threading import Event

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

from config.metrics.counters import consumer_batch_recorded, consumer_polled
from metering.adjustments import AdjustmentResult, adjustments_apply
from metering.consumer import steps
from metering.schemas import Catalog
from metering.selectors import catalog_current
from billing.selectors import month_bounds
from billing.services.spend import spends_refresh
from metering.services import (
    AppendResult, consumer_watermark_record, dead_letters_record, ledger_append, ledger_partitions_ahead, utc_now,
)
from metering.topics import PRODUCER_CONFIG

logger = logging.getLogger("metering.consumer")


@dataclass
class RunStats:
    messages: int = 0
    events: int = 0
    appended: int = 0
    duplicates: int = 0
    conflicts: int = 0
    dead_letters: int = 0
    adjustments: int = 0
    batches: int = 0
    isolation_writes: int = 0  # transactions tried while bisecting batches Postgres refused
    started_at: float = field(default_factory=time.monotonic)

    def add(self, result: AppendResult, *, messages: int, events: int, dead_letters: int,
            adjusted: AdjustmentResult) -> None:
        self.messages += messages
        self.adjustments += adjusted.applied
        self.events += events
        self.appended += result.appended
        self.duplicates += result.duplicates
        self.conflicts += result.conflicts
        self.dead_letters += dead_letters
        self.batches += 1


@dataclass
class ConsumerConfig:
    """How the ledger consumer talks to Kafka.

    `max_poll_interval_ms` bounds the time between two polls, so the time one batch may
    take to write: past it, kafka-python's heartbeat thread leaves the group (the
    session itself is kept alive by that thread, whatever the main thread does), the
    partitions move, the offset commit is refused and the batch is replayed. So every
    batch must be written well within it. A clean batch of 20,000 events takes about
    2 s on two shared cores; one holding k elements Postgres refuses is bisected
    (`LedgerConsumer._write_bisecting`) in at most 2·k·⌈log2 n⌉ transactions, about 2n
    rows for k = 1: 31 transactions and ~6 s for one in 20,000 (`bench.poison_isolation`),
    where the former one-transaction-per-element pass took minutes and, once it outlived
    the interval, replayed forever. 300 s (Kafka's default, set explicitly so the
    reasoning is visible) leaves a wide margin; only a fault that refuses most elements
    of large batches (a broken table rather than a poison message) comes near it, and
    `--batch-messages-max` is the lever then.
    """

    bootstrap_servers: str
    topic: str
    group_id: str
    dlq_topic: str
    batch_messages_max: int = 20_000
    batch_bytes_max: int = 8 * 1024 * 1024
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000
    stats_interval_s: float = 30.0
    idle_exit_s: float | None = None  # stop after this long with nothing to read (demo, tests)


class CatalogCache:
    """The catalog as of the last load; reloaded when a batch names something unknown."""

    def __init__(self, refresh_min_s: float = 1.0):
        self.refresh_min_s = refresh_min_s
        self.catalog: Catalog = catalog_current()
        self.loaded_at = time.monotonic()

    def reload_if_stale(self) -> bool:
        """Reload if the last load is older than refresh_min_s; True only if it changed."""
        if time.monotonic() - self.loaded_at < self.refresh_min_s:
            return False
        previous, self.catalog, self.loaded_at = self.catalog, catalog_current(), time.monotonic()
        return self.catalog != previous


# Fetch responses are kept small because kafka-python reads and decodes a whole response in
# one step of its IO thread's event loop, 4 KiB per recv() (kafka/net/transport.py,
# `_sock_recv`), and each recv() releases the GIL, which the consumer's main thread, busy
# checking and staging the previous batch, takes, so every recv() waits to get it back
# (and for a core, on a busy machine). A 5 MB response (the former 4 MiB per partition,
# 16 MiB per response) was ~1,300 such hand-overs: one step took 0.1-0.6 s of wall time
# for 13-43 ms of CPU (docs/benchmarks.md, "the kafka-python event loop"), and
# kafka-python warned "Task ... ran for 0.4s (>0.100s threshold). It is blocking the
# event loop": the heartbeat coroutine, on the same loop, waits behind such steps, and a
# heartbeat starved past session_timeout_ms is a rebalance under load. 512 KiB responses
# are ≤ 128 hand-overs per step. `_poll` keeps batches full regardless (it waits for the
# next response while the partitions are behind), so the batch size, not the fetch size,
# still sets the transaction size. (Neither SO_RCVBUF nor a shorter sys.setswitchinterval
# helped: the recv() loop reads until the response ends, whatever the socket buffer.)
FETCH_MAX_BYTES = 512 * 1024
# While the partitions are behind, `_poll` waits this long for the next fetch response
# (it lands in a few ms in a backlog) rather than writing a batch of one small response.
BEHIND_POLL_MS = 100
# How often an idle consumer, caught up, says so (the watermark live balances are exact up to).
IDLE_WATERMARK_S = 0.5


def kafka_consumer(config: ConsumerConfig) -> KafkaConsumer:
    return KafkaConsumer(
        config.topic,
        bootstrap_servers=config.bootstrap_servers,
        group_id=config.group_id,
        client_id=f"{config.group_id}-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=config.session_timeout_ms,
        max_poll_interval_ms=config.max_poll_interval_ms,
        heartbeat_interval_ms=max(config.session_timeout_ms // 5, 500),
        max_partition_fetch_bytes=FETCH_MAX_BYTES,  # a larger first batch is still returned whole
        fetch_max_bytes=FETCH_MAX_BYTES,
    )


class LedgerConsumer:
    def __init__(self, config: ConsumerConfig, *, consumer: KafkaConsumer | None = None):
        self.config = config
        self.catalog = CatalogCache()  # first: with the database away, no Kafka client is left open
        self.consumer = consumer or kafka_consumer(config)
        self.producer = KafkaProducer(bootstrap_servers=config.bootstrap_servers, **PRODUCER_CONFIG)
        self.lateness = timedelta(days=settings.USAGE_LATENESS_DAYS)
        self.stats = RunStats()
        self.caught_up_at = None  # set by `_poll`: an instant before which everything produced is in hand
        self._asked = None  # (instant, end offsets the broker stated then) not yet passed

    def run(self, stop: Event) -> RunStats:
        ledger_partitions_ahead(as_of=utc_now())
        last_records_at = last_log_at = last_idle_mark_s = time.monotonic()
        logged = RunStats()
        try:
            while not stop.is_set():
                records = self._poll()
                consumer_polled(self.consumer)
                now_s = time.monotonic()
                if records:
                    self._process(records)
                    last_records_at = now_s
                elif self.caught_up_at is not None and now_s - last_idle_mark_s >= IDLE_WATERMARK_S:
                    with transaction.atomic():
                        self._watermark_record()
                    last_idle_mark_s = now_s
                if not records and self.config.idle_exit_s is not None and self.consumer.assignment() \
                        and now_s - last_records_at >= self.config.idle_exit_s and self._caught_up():
                    break  # caught up too: a rebalance can hold back records for longer than idle_exit_s
                if now_s - last_log_at >= self.config.stats_interval_s:
                    self._log_progress("progress", since=logged, seconds=now_s - last_log_at)
                    logged, last_log_at = replace(self.stats), now_s
        finally:
            self._log_progress("total", since=RunStats(), seconds=time.monotonic() - self.stats.started_at)
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)
        return self.stats

    def _poll(self) -> list:
        """Up to batch_messages_max records or batch_bytes_max bytes, whichever comes first,
        but no more than the partitions hold now: once every assigned partition is read up to
        its high watermark the batch is written. Without that stop, a steady producer kept
        the accumulating loop fed (a fresh fetch lands every few ms) and batches waited to
        fill: p99 10.6 s from produce to ledger at half the maximum rate (bench.latency),
        2.3 s with it on the same busy machine, 0.3 s on a quieter one. While the partitions are behind (a backlog) it waits for the next
        fetch response, so a backlog still makes full batches from small responses."""
        records, size = [], 0
        timeout_ms = 1_000
        while len(records) < self.config.batch_messages_max and size < self.config.batch_bytes_max:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.config.batch_messages_max - len(records))
            fresh = [record for batch in polled.values() for record in batch]
            if not fresh:
                break
            records.extend(fresh)
            size += sum(len(r.value or b"") for r in fresh)
            if self._caught_up():
                break
            timeout_ms = BEHIND_POLL_MS
        self.caught_up_at = self._read_up_at()
        return records

    def _read_up_at(self):
        """An instant before which everything produced to the assigned partitions is in
        hand (once what was polled is written), or None. The broker is asked for its end
        offsets at an instant T; once the position passes them, T is such an instant. Asked
        of the broker, not taken from the last fetch response: a response fetched ahead,
        while the previous batch was written, holds an older high watermark, and a watermark
        stamped from it ran ahead of the ledger (docs/benchmarks.md, "Spend control"). While
        events keep coming, T trails by the batch or two it takes to pass the ends asked."""
        partitions = {tp for tp in self.consumer.assignment() if tp.topic == self.config.topic}
        try:
            positions = {tp: self.consumer.position(tp, timeout_ms=0) for tp in partitions}
            reached = None
            for _ in range(2):  # the ends asked before, then (if passed) fresh ones: passed already if caught up
                if self._asked is None or set(self._asked[1]) != partitions:
                    self._asked = (utc_now(), self.consumer.end_offsets(list(partitions))) if partitions else None
                if self._asked is None or not all((positions[tp] or 0) >= end for tp, end in self._asked[1].items()):
                    break
                reached, self._asked = self._asked[0], None
        except KafkaError:
            self._asked = None
            return None
        return reached

    def _caught_up(self) -> bool:
        """Every assigned partition read up to the high watermark of its last fetch response."""
        try:
            for tp in self.consumer.assignment():
                highwater = self.consumer.highwater(tp)
                position = self.consumer.position(tp, timeout_ms=0)
                if highwater is not None and position is not None and position < highwater:
                    return False
        except KafkaError:  # the assignment changed under us: write what we hold
            return True
        return True

    def _process(self, records: list) -> None:
        started_s = time.monotonic()
        checked = steps.check(records, catalog=self.catalog.catalog, lateness=self.lateness, now=utc_now())
        if checked.names_unknown and self.catalog.reload_if_stale():
            checked = steps.check(records, catalog=self.catalog.catalog, lateness=self.lateness, now=utc_now())
        result, adjusted, rejected = self._write(checked)
        for rejection in rejected:
            self.producer.send(self.config.dlq_topic, key=rejection.key, value=rejection.dlq_value())
        if rejected:
            self.producer.flush()
        try:
            self.consumer.commit(offsets=steps.next_offsets(records))
        except (CommitFailedError, RebalanceInProgressError):
            # The group rebalanced while we wrote (RebalanceInProgressError: it still is, e.g.
            # another process of `consume_usage --processes N` joining mid-batch): whoever owns
            # the partitions next replays the batch from the committed offsets, a no-op.
            logger.warning("offset commit refused after a rebalance; the batch will be replayed harmlessly")
        events = len(checked.accepted) + len(checked.adjustments) + len(checked.rejected)
        self.stats.add(result, messages=len(records), events=events, dead_letters=len(rejected), adjusted=adjusted)
        consumer_batch_recorded(result=result, adjusted=adjusted, rejected=rejected, events=events, started_s=started_s)

    def _watermark_record(self) -> None:
        if self.caught_up_at is not None:
            consumer_watermark_record(topic=self.config.topic, at=self.caught_up_at, partitions=[
                tp.partition for tp in self.consumer.assignment() if tp.topic == self.config.topic])

    def _balances_refresh(self, result: AppendResult, checked: steps.Checked) -> None:
        """Last in the batch's transaction: the live spend of the customers whose usage of
        the current period it changed, then the watermark (balances are exact up to it)."""
        now = utc_now()
        period = month_bounds(now)[0]
        customers = {customer for customer, month in result.touched if month == period}
        customers |= {item.adjustment.customer_id for item in checked.adjustments}
        spends_refresh(customer_ids=customers, as_of=now)
        self._watermark_record()

    def _write(self, checked: steps.Checked) -> tuple[AppendResult, AdjustmentResult, list[steps.Rejected]]:
        """Events first, then the batch's adjustments (which may name them), then dead
        letters, then the live balances they change."""
        try:
            with transaction.atomic():
                result = ledger_append(accepted=checked.accepted)
                adjusted, refused = adjustments_apply(accepted=checked.adjustments, as_of=utc_now())
                dead_letters_record(rejected=[*checked.rejected, *refused])
                self._balances_refresh(result, checked)
            return result, adjusted, [*checked.rejected, *refused]
        except (OperationalError, InterfaceError):
            raise  # the database is away: crash, restart, replay
        except DatabaseError as exc:
            logger.warning("batch write refused (%s); bisecting %d events to isolate the elements at fault",
                           " ".join(str(exc).split())[:300], len(checked.accepted))
            return self._write_bisecting(checked)

    def _write_bisecting(self, checked: steps.Checked
                         ) -> tuple[AppendResult, AdjustmentResult, list[steps.Rejected]]:
        """A poison element must not stall the partition, nor take the batch out of the group.

        The batch failed as a whole, so its halves are written, each in a transaction of
        its own: a half that commits is done, a half that fails is halved again, down to
        single elements, which become `write_failed` dead letters. k elements at fault
        among n ≥ 2 cost at most 2·k·⌈log2 n⌉ transactions (one at a time costs n).

        Exactly once still holds if the process dies mid-way with some halves committed:
        the offsets are committed only after the dead letters, so the batch is replayed;
        a committed half's events hold their claims with these very source coordinates,
        so the replay neither appends nor counts them as repeats, and a dead letter is
        kept once per (topic, partition, offset, index).
        """
        total, failed = AppendResult(), []
        accepted = checked.accepted
        mid = len(accepted) // 2
        pending = [accepted[mid:], accepted[:mid]] if len(accepted) > 1 else [accepted]
        while pending:
            part = pending.pop()
            if not part:
                continue
            self.stats.isolation_writes += 1
            try:
                with transaction.atomic():
                    total += ledger_append(accepted=part)
            except (OperationalError, InterfaceError):
                raise
            except DatabaseError as exc:
                if len(part) > 1:
                    mid = len(part) // 2
                    pending += [part[mid:], part[:mid]]  # the first half next: the batch's order
                    continue
                item = part[0]
                failed.append(steps.Rejected(
                    "invalid", "write_failed", {"non_field_errors": [str(exc).strip()]}, item.source,
                    item.received_at, item.event.customer_id.encode(), payload=item.event.payload(),
                ))
        adjusted, refused = self._adjust_one_by_one(checked.adjustments)
        rejected = [*checked.rejected, *failed, *refused]
        with transaction.atomic():
            dead_letters_record(rejected=rejected)
            self._balances_refresh(total, checked)
        return total, adjusted, rejected

    def _adjust_one_by_one(self, items: list[steps.AdjustmentAccepted]
                           ) -> tuple[AdjustmentResult, list[steps.Rejected]]:
        """The adjustments of a refused batch, each in a transaction of its own; one that
        Postgres refuses becomes a `write_failed` dead letter."""
        total, rejected = AdjustmentResult(), []
        for item in items:
            try:
                with transaction.atomic():
                    adjusted, refused = adjustments_apply(accepted=[item], as_of=utc_now())
            except (OperationalError, InterfaceError):
                raise
            except DatabaseError as exc:
                rejected.append(steps.Rejected("invalid", "write_failed", {"non_field_errors": [str(exc).strip()]},
                                               item.source, item.received_at, item.key,
                                               payload=item.adjustment.payload()))
                continue
            total += adjusted
            rejected.extend(refused)
        return total, rejected

    def _log_progress(self, label: str, *, since: RunStats, seconds: float) -> None:
        events = self.stats.events - since.events
        lag = self._lag()
        logger.info(
            "ledger-consumer %s: %.0f events/s over %.0fs; appended=%d duplicates=%d conflicts=%d "
            "dead_letters=%d batches=%d; lag=%s",
            label, events / max(seconds, 1e-9), seconds,
            self.stats.appended - since.appended, self.stats.duplicates - since.duplicates,
            self.stats.conflicts - since.conflicts, self.stats.dead_letters - since.dead_letters,
            self.stats.batches - since.batches, lag,
        )

    def _lag(self) -> int | str:
        try:
            total = 0
            for tp in self.consumer.assignment():
                highwater = self.consumer.highwater(tp)
                if highwater is None:
                    return "unknown"
                total += max(highwater - self.consumer.position(tp, timeout_ms=1000), 0)
            return total
        except Exception:  # lag is informational; never let it stop the consumer
            return "unknown"
