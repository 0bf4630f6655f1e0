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
