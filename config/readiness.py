"""Can this process reach what it needs now? Postgres answers `SELECT 1`, and a Kafka broker
answers a metadata request naming the usage topic, which must exist.

Both are bounded: Postgres by DATABASE_CONNECT_TIMEOUT, Kafka by READINESS_TIMEOUT_MS (to
bootstrap, then to answer). Kafka's verdict, good or bad, is kept
READINESS_KAFKA_CACHE_SECONDS per broker list and topic, so probes every few seconds
neither open a connection each nor hold a gunicorn worker for the timeout each while
the broker is away.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from kafka.admin import KafkaAdminClient

from metering.topics import usage_topic


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str
    latency_ms: float


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def database_check() -> Check:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return Check(False, _first_line(exc), _ms_since(started))
    return Check(True, "SELECT 1 answered", _ms_since(started))


_kafka_verdicts: dict[tuple[str, str], tuple[float, Check]] = {}


def kafka_check() -> Check:
    key = (settings.KAFKA_BOOTSTRAP_SERVERS, usage_topic())
    kept = _kafka_verdicts.get(key)
    if kept is not None and kept[0] > time.monotonic():
        return kept[1]
    check = _kafka_probe(*key)
    _kafka_verdicts[key] = (time.monotonic() + settings.READINESS_KAFKA_CACHE_SECONDS, check)
    return check


def _kafka_probe(bootstrap: str, topic: str) -> Check:
    started, timeout_ms = time.monotonic(), settings.READINESS_TIMEOUT_MS
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tokenledger-readyz",
                                 request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
        try:
            (described,) = admin.describe_topics([topic])
        finally:
            admin.close()
    except Exception as exc:  # whatever stops the probe (timeout, refused, a bad address) means not ready
        return Check(False, f"{bootstrap}: {_first_line(exc)}", _ms_since(started))
    if described["error_code"] or not described["partitions"]:
        return Check(False, f"topic {topic} does not exist on {bootstrap}", _ms_since(started))
    return Check(True, f"topic {topic} has {len(described['partitions'])} partitions", _ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
