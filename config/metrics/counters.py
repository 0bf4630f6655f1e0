"""Every metric a process updates, and the calls that update them.

Each process counts only what it does itself: the ledger consumer its batches, the web
its requests, a Celery worker its tasks and webhook attempts. Under gunicorn and the
Celery prefork pool the children's values are summed through PROMETHEUS_MULTIPROC_DIR
(`exposition`); a gauge keeps the largest value among live processes.
"""

import time
from pathlib import Path

from kafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram

from config.metrics.exposition import multiprocess_dir

if multiprocess_dir():  # the first metric below writes its file there
    Path(multiprocess_dir()).mkdir(parents=True, exist_ok=True)

INGEST_EVENTS = Counter(
    "tokenledger_ingest_events", "Usage events the ledger consumer read, by outcome: accepted (appended to "
    "the ledger), duplicate (exact repeat), conflict (repeat with another payload), dead_letter, or replayed "
    "(read again from the same offset, already recorded: a no-op).", ["outcome"])
INGEST_DEAD_LETTERS = Counter(
    "tokenledger_ingest_dead_letters", "Dead letters the ledger consumer recorded (conflicts included), "
    "by kind and reason.", ["kind", "reason"])
USAGE_ADJUSTMENTS = Counter(
    "tokenledger_usage_adjustments", "Usage adjustments by path (kafka, rest) and outcome: applied, repeat "
    "(exact repeat, counted), conflict (another payload under an accepted adjustment_id) or refused (unknown or "
    "voided event).", ["path", "outcome"])
CONSUMER_BATCH_SECONDS = Histogram(
    "tokenledger_consumer_batch_duration_seconds", "From a batch polled to its offsets committed.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
CONSUMER_LAG = Gauge(
    "tokenledger_consumer_lag_messages", "Records between the consumer's position and the partition's high "
    "watermark, for each partition assigned to this consumer.", ["topic", "partition"],
    multiprocess_mode="livemax")
CONSUMER_LAST_POLL = Gauge(
    "tokenledger_consumer_last_poll_timestamp_seconds", "When the consumer last polled Kafka, by consumer group.",
    ["group"], multiprocess_mode="livemax")

HTTP_REQUESTS = Counter(
    "tokenledger_http_requests", "HTTP requests answered, by URL route, method and status.",
    ["route", "method", "status"])
HTTP_SECONDS = Histogram("tokenledger_http_request_duration_seconds", "Time to answer, by URL route.", ["route"])

CELERY_TASKS = Counter(
    "tokenledger_celery_tasks", "Celery tasks run, by task and outcome (success, failure, retry).",
    ["task", "outcome"])
CELERY_TASK_SECONDS = Histogram("tokenledger_celery_task_duration_seconds", "Time a task ran, by task.", ["task"])

WEBHOOK_ATTEMPTS = Counter(
    "tokenledger_webhook_attempts", "Webhook delivery attempts, by event and outcome: delivered (2xx) or "
    "failed (retried with backoff).", ["event", "outcome"])
WEBHOOK_GIVEN_UP = Counter(
    "tokenledger_webhook_deliveries_given_up", "Deliveries abandoned after WEBHOOK_RETRIES_MAX failed attempts.")

_lag_labels: set[tuple[str, str]] = set()


def consumer_polled(consumer) -> None:
    """Lag of each assigned partition from the consumer's own state (no request to Kafka);
    partitions that moved to another consumer stop being reported here."""
    global _lag_labels
    CONSUMER_LAST_POLL.labels(consumer.config["group_id"]).set_to_current_time()
    seen = set()
    for tp in consumer.assignment():
        try:
            highwater, position = consumer.highwater(tp), consumer.position(tp, timeout_ms=0)
        except KafkaError:  # revoked meanwhile
            continue
        if highwater is not None and position is not None:
            labels = (tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(*labels).set(max(highwater - position, 0))
            seen.add(labels)
    for labels in _lag_labels - seen:
        CONSUMER_LAG.remove(*labels)
    _lag_labels = seen


def usage_adjustment_counted(*, path: str, outcome: str, count: int = 1) -> None:
    if count:
        USAGE_ADJUSTMENTS.labels(path, outcome).inc(count)


def consumer_batch_recorded(*, result, adjusted, rejected, events: int, started_s: float) -> None:
    """A batch committed: its AppendResult and AdjustmentResult, its dead letters (the
    adjustments' conflicts and refusals among them), how many elements it held, and
    time.monotonic() when its processing began. A dead letter read again is counted
    again (recording it is the no-op)."""
    CONSUMER_BATCH_SECONDS.observe(time.monotonic() - started_s)
    INGEST_EVENTS.labels("accepted").inc(result.appended)
    INGEST_EVENTS.labels("duplicate").inc(result.duplicates)
    INGEST_EVENTS.labels("conflict").inc(result.conflicts)
    INGEST_EVENTS.labels("dead_letter").inc(len(rejected))
    recorded = result.appended + result.duplicates + result.conflicts + len(rejected)
    recorded += adjusted.applied + adjusted.repeat
    INGEST_EVENTS.labels("replayed").inc(events - recorded)
    for outcome in ("applied", "repeat", "conflict", "refused"):
        usage_adjustment_counted(path="kafka", outcome=outcome, count=getattr(adjusted, outcome))
    if result.conflicts:
        INGEST_DEAD_LETTERS.labels("conflict", "conflicting_duplicate").inc(result.conflicts)
    for rejection in rejected:
        INGEST_DEAD_LETTERS.labels(rejection.kind, rejection.reason).inc()


def webhook_attempted(*, event: str, delivered: bool) -> None:
    WEBHOOK_ATTEMPTS.labels(event, "delivered" if delivered else "failed").inc()


def webhook_given_up() -> None:
    WEBHOOK_GIVEN_UP.inc()
