"""Reading and writing test topics over the Kafka protocol."""

import json
import time

from kafka import KafkaConsumer, TopicPartition


def send(producer, topic: str, value, *, key: str | None = "acme", raw: bool = False) -> None:
    body = value if raw else json.dumps(value).encode()
    producer.send(topic, key=key.encode() if key is not None else None, value=body)


def read_topic(bootstrap: str, topic: str, *, expected: int, timeout_s: float = 15) -> list:
    """Every record of a topic from the beginning, without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    return records


def offsets_uncommitted(bootstrap: str, topic: str, *, group: str) -> dict[int, int]:
    """Per partition, how many records lie past the group's committed offset (empty: all committed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    ends = consumer.end_offsets(partitions)
    behind = {tp.partition: ends[tp] - (consumer.committed(tp) or 0) for tp in partitions}
    consumer.close(autocommit=False)
    return {partition: count for partition, count in behind.items() if count}
