"""Producing usage events to Kafka from the web process (REST ingestion)."""

import json
import threading
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from kafka import KafkaProducer

from metering.topics import PRODUCER_CONFIG, usage_topic

_producer: KafkaProducer | None = None
_lock = threading.Lock()
SEND_TIMEOUT_S = 10


def producer_shared() -> KafkaProducer:
    """One producer per process, made on first use (after gunicorn forks)."""
    global _producer
    with _lock:
        if _producer is None:
            _producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, **PRODUCER_CONFIG)
        return _producer


def events_produce(*, events: list[dict], arrived_at: datetime, topic: str | None = None) -> None:
    """Send events grouped per customer as batched messages keyed by customer_id, and
    wait until the broker has acknowledged every one (acks=all).

    The record timestamp is the arrival time, the instant the consumer judges
    lateness against, so both paths reach the same verdict.
    """
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_customer[event["customer_id"]].append(event)
    producer, timestamp_ms = producer_shared(), int(arrived_at.timestamp() * 1000)
    futures = [
        producer.send(
            topic or usage_topic(), key=customer_id.encode(), timestamp_ms=timestamp_ms,
            value=json.dumps(batch if len(batch) > 1 else batch[0], separators=(",", ":")).encode(),
        )
        for customer_id, batch in by_customer.items()
    ]
    producer.flush(timeout=SEND_TIMEOUT_S)
    for future in futures:
        future.get(timeout=SEND_TIMEOUT_S)


def producer_close() -> None:
    """Flush and drop the shared producer (process exit, or a test's broker going away)."""
    global _producer
    with _lock:
        if _producer is not None:
            _producer.close(timeout=5)
            _producer = None
