"""Kafka topic names and how the project's producers are configured.

Imports no Django at module level: the gateway client (which runs without Django)
produces with the same PRODUCER_CONFIG."""


def usage_topic() -> str:
    from django.conf import settings

    return settings.KAFKA_USAGE_TOPIC


def usage_dlq_topic() -> str:
    from django.conf import settings

    return settings.KAFKA_USAGE_DLQ_TOPIC


PARTITIONS_DEFAULT = 6

# acks=all: a send is acknowledged only once every in-sync replica has it.
PRODUCER_CONFIG = {"acks": "all", "linger_ms": 5, "retries": 5, "max_request_size": 6 * 1024 * 1024}
