"""`consume_usage --processes N`: N consumer processes in one group under one supervisor.
Real processes, broker and Postgres."""

import signal

import pytest
from django.db.models import Max
from kafka import KafkaConsumer, TopicPartition

from metering.models import DeadLetter, UsageDuplicate, UsageEventKey
from tests.metering.test_crash_safety import (  # noqa: F401 (customers is a fixture)
    assert_ledger_matches, customers, produce_traffic, start_consumer, wait_for_progress,
)

pytestmark = pytest.mark.django_db(transaction=True)


def consumed_counts(stdout: str) -> list[int]:
    """Each child prints its own `consumed N events ...` line."""
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("consumed")]


def elements(traffic) -> int:
    """Every element a drain reads: accepted, repeated, invalid or undecodable."""
    tally = traffic.tally
    return tally.accepted + tally.duplicates + tally.conflicts + tally.invalid + tally.undecodable


def recorded_elements(topic: str) -> int:
    """Elements of the topic the ledger holds a record of: each lands in exactly one of the
    key table (accepted), the duplicates or the dead letters, once per source coordinates."""
    models = (UsageEventKey, UsageDuplicate, DeadLetter)
    return sum(model.objects.filter(source_topic=topic).count() for model in models)


def recorded_offsets_max(topic: str) -> dict[int, int]:
    """Per partition, the last offset the ledger recorded an element from."""
    highest: dict[int, int] = {}
    for model in (UsageEventKey, UsageDuplicate, DeadLetter):
        rows = model.objects.filter(source_topic=topic).values("source_partition").annotate(last=Max("source_offset"))
        for row in rows:
            highest[row["source_partition"]] = max(highest.get(row["source_partition"], -1), row["last"])
    return highest


def committed_offsets(bootstrap: str, topic: str, *, group: str) -> dict[int, int]:
    """Read after the group's members are gone (a reader in the group does not join it)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    committed = {tp.partition: consumer.committed(tp) for tp in partitions}
    consumer.close(autocommit=False)
    return {partition: offset for partition, offset in committed.items() if offset is not None}


def test_two_processes_drain_the_topic_into_an_exact_ledger(customers, topics, producer, kafka_bootstrap):
    traffic = produce_traffic(producer, topics["usage"], seed=41, singles=4_000, batched=4_000)

    supervisor = start_consumer(topics, kafka_bootstrap, batch_messages_max=100, extra=("--processes", "2"))
    stdout, stderr = supervisor.communicate(timeout=300)

    assert supervisor.returncode == 0, stderr
    counts = consumed_counts(stdout)
    assert len(counts) == 2 and all(n > 0 for n in counts), stdout
    assert sum(counts) >= elements(traffic)  # more if the group's first rebalance replayed a batch
    assert_ledger_matches(traffic)


def test_sigterm_to_the_supervisor_stops_both_children_cleanly_with_offsets_committed(
    customers, topics, producer, kafka_bootstrap
):
    traffic = produce_traffic(producer, topics["usage"], seed=42, singles=4_000, batched=4_000)

    supervisor = start_consumer(topics, kafka_bootstrap, batch_messages_max=100, extra=("--processes", "2"))
    wait_for_progress(supervisor, 0)
    supervisor.send_signal(signal.SIGTERM)
    stdout, stderr = supervisor.communicate(timeout=60)

    assert supervisor.returncode == 0, stderr
    assert len(consumed_counts(stdout)) == 2, stdout
    assert recorded_elements(topics["usage"]) < elements(traffic), "the stop must land mid-drain"
    # Every batch the children wrote was committed, and nothing more: each partition's
    # committed offset is one past the last offset the ledger recorded from it.
    recorded = recorded_offsets_max(topics["usage"])
    committed = committed_offsets(kafka_bootstrap, topics["usage"], group=topics["group"])
    assert recorded and {p: committed.get(p) for p in recorded} == {p: o + 1 for p, o in recorded.items()}
