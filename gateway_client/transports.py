"""The two ways a batch reaches tokenledger: a Kafka message, or a REST request.

A batch counts as delivered only on an acknowledgement: a resolved Kafka future
(acks=all), or a 202/422 whose body says what became of each event. Anything else
(no answer, a timeout, a refusal to connect, a 5xx) leaves the batch undelivered and
the caller keeps it. Either transport may deliver a batch whose acknowledgement was
lost; the resend is an exact duplicate the ledger drops and counts.
"""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from kafka import KafkaProducer
from kafka.errors import KafkaError

from gateway_client.buffer import Batch
from metering.consumer.steps import BATCH_EVENTS_MAX  # DESIGN.md §1: a message holds at most 1,000 events
from metering.topics import PRODUCER_CONFIG  # the ledger's own producers' settings (acks=all, ...)

logger = logging.getLogger(__name__)

# Idempotent production (a producer id and per-partition sequence numbers, so the
# producer's own retries are not written twice). kafka-python 3 turns it on by default;
# said here so it stays on. Tansu grants the producer id (tests/gateway_client).
IDEMPOTENCE_CONFIG = {"enable_idempotence": True, "max_in_flight_requests_per_connection": 5}
BATCH_BYTES_MAX = 5 * 1024 * 1024  # API.md: at most 5 MiB
REST_WRAPPER_BYTES = len(b'{"events":}')


class KafkaSender:
    """One KafkaProducer, made on first use and dropped after any failure, so the next
    attempt starts from a fresh connection (and a fresh producer id)."""

    def __init__(self, *, bootstrap_servers: str, topic: str, client_id: str, timeout_s: float,
                 idempotent: bool = True, config: dict | None = None, on_producer=None):
        self.topic = topic
        timeout_ms = int(timeout_s * 1000)
        self.config = {
            **PRODUCER_CONFIG, **(IDEMPOTENCE_CONFIG if idempotent else {"enable_idempotence": False}),
            "bootstrap_servers": bootstrap_servers, "client_id": client_id,
            # every wait bounded by timeout_s, so an unreachable broker is noticed in time
            "bootstrap_timeout_ms": timeout_ms, "max_block_ms": timeout_ms, "request_timeout_ms": timeout_ms,
            "delivery_timeout_ms": timeout_ms + PRODUCER_CONFIG["linger_ms"], "reconnect_backoff_max_ms": 1_000,
            **(config or {}),
        }
        self.flush_timeout_s = self.config["delivery_timeout_ms"] / 1000 + 1
        self._producer: KafkaProducer | None = None
        self._on_producer = on_producer

    def send(self, batches: list[Batch]) -> tuple[list[Batch], list[Batch], str | None]:
        """(acknowledged, not acknowledged, why) for the batches, each one message."""
        try:
            producer = self._producer_get()
        except (KafkaError, RuntimeError) as exc:  # RuntimeError: no new threads at interpreter exit
            return [], list(batches), f"cannot reach Kafka: {exc!r}"
        futures, failed, why = [], [], None
        for batch in batches:
            try:
                futures.append((batch, producer.send(self.topic, key=batch.customer_id.encode(), value=batch.array())))
            except KafkaError as exc:
                failed.append(batch)
                why = why or f"send refused: {exc!r}"
        try:
            producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            why = why or f"flush: {exc!r}"
        acked = []
        for batch, future in futures:
            if future.is_done and future.succeeded():
                acked.append(batch)
            else:
                failed.append(batch)
                why = why or f"not acknowledged: {future.exception if future.is_done else 'timed out'!r}"
        if failed:
            self.reset()
        return acked, failed, why

    def connect(self) -> str | None:
        """Make the producer now (it starts threads, which Python refuses once the
        interpreter is exiting, so a flush at exit needs it made before). Why not, if not."""
        try:
            self._producer_get()
        except (KafkaError, RuntimeError) as exc:
            return repr(exc)
        return None

    def _producer_get(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self.config)
            if self._on_producer:
                self._on_producer(self._producer)
        return self._producer

    def reset(self) -> None:
        """Drop the producer without waiting: what it still holds is not counted as
        delivered and is resent from the buffer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # noqa: BLE001 -- closing a broken producer must not stop the sender
                logger.debug("closing the Kafka producer failed", exc_info=True)

    def close(self, timeout_s: float = 2) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)


@dataclass(frozen=True)
class RestOutcome:
    """What a POST made of a batch.

    delivered: settled; `accepted` are in, `rejected` (API.md's list) never will be.
    retry: not settled; try again later (`retry_after_s` when the server said when).
    split: the server refused the size of the request; send the halves.
    """

    kind: str
    accepted: int = 0
    rejected: list[dict] = field(default_factory=list)
    retry_after_s: float | None = None
    detail: str = ""


class RestSender:
    def __init__(self, *, rest_url: str, api_key: str, timeout_s: float, user_agent: str):
        self.url = rest_url.rstrip("/") + "/usage-events"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                        "Accept": "application/json", "User-Agent": user_agent}
        self.timeout_s = timeout_s

    def send(self, batch: Batch) -> RestOutcome:
        body = b'{"events":' + batch.array() + b"}"
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, payload = response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            status, payload, retry_after = exc.code, _json(exc.read()), exc.headers.get("Retry-After")
            exc.close()
            return _outcome_of_error(status, payload, retry_after, batch)
        except (OSError, ValueError) as exc:  # refused, reset, timed out, unreadable answer
            return RestOutcome("retry", detail=f"POST {self.url}: {exc!r}")
        if status == 202 and isinstance(payload, dict) and isinstance(payload.get("accepted"), int):
            return RestOutcome("delivered", accepted=payload["accepted"], rejected=list(payload.get("rejected") or []))
        return RestOutcome("retry", detail=f"POST {self.url}: unexpected {status} {str(payload)[:200]}")


def _outcome_of_error(status: int, payload, retry_after: str | None, batch: Batch) -> RestOutcome:
    detail = f"{status} {(payload or {}).get('detail', '') if isinstance(payload, dict) else ''}".strip()
    if status == 422 and isinstance(payload, dict) and isinstance(payload.get("rejected"), list):
        return RestOutcome("delivered", rejected=payload["rejected"], detail=detail)
    if status == 429:
        return RestOutcome("retry", retry_after_s=_retry_after_s(retry_after), detail=detail)
    if status in (400, 413):
        if len(batch.events) > 1:
            return RestOutcome("split", detail=detail)
        # One event the server cannot even read as a request: it never will.
        errors = payload.get("errors") if isinstance(payload, dict) else None
        return RestOutcome("delivered", rejected=[{"index": 0, "event_id": batch.events[0].event_id,
                                                   "errors": errors or {"non_field_errors": [detail]}}], detail=detail)
    # 401/403/404: the gateway's configuration (key, URL), 5xx: the server. Neither is
    # the events' fault, so they are kept and retried; the log says why.
    return RestOutcome("retry", detail=detail)


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return None
